// Package clock is the time that ChatPacket's deadlines and retention read:
// the wall clock in production, a clock that tests move by hand.
//
// Retention is tested by moving the clock, never by waiting: a job that
// runs "12 months later" runs when a test advances a Movable by 12 months.
package clock

import (
	"sync"
	"time"
)

// Clock tells the time.
type Clock interface {
	Now() time.Time
}

// Real is the wall clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Movable is a clock that runs with the wall clock, shifted by however far
// it was moved. Tests advance it; time still passes between calls, so code
// that waits for real time keeps working. It is safe for concurrent use.
type Movable struct {
	mu     sync.Mutex
	offset time.Duration
}

// NewMovable returns a clock that starts at the wall clock's time.
func NewMovable() *Movable { return &Movable{} }

// Now is the wall clock plus every Advance so far.
func (m *Movable) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Now().Add(m.offset)
}

// Advance moves the clock forward by d (backward for a negative d).
func (m *Movable) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.offset += d
}
