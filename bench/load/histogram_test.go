package load

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every bucket's middle falls in that bucket, and buckets are in order.
	for i := range histBuckets - 1 {
		if got := histIndex(histValue(i)); got != i {
			t.Fatalf("histIndex(histValue(%d) = %d) = %d", i, histValue(i), got)
		}
		if histValue(i+1) <= histValue(i) {
			t.Fatalf("histValue(%d) = %d ≥ histValue(%d) = %d", i, histValue(i), i+1, histValue(i+1))
		}
	}
	if got := histIndex(1 << 62); got != histBuckets-1 {
		t.Errorf("histIndex(2^62) = %d; want the last bucket %d", got, histBuckets-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if got := h.quantile(0.99); got != 0 {
		t.Errorf("empty quantile(0.99) = %v; want 0", got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var exact []time.Duration
	for range 100_000 {
		// Log-normal-ish: most around 1 ms, a tail to seconds.
		d := time.Duration(float64(time.Millisecond) * (0.2 + rng.ExpFloat64()*rng.ExpFloat64()*3))
		exact = append(exact, d)
		h.add(d)
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := exact[int(q*float64(len(exact)))-1]
		got := h.quantile(q)
		if diff := float64(got-want) / float64(want); diff > 1.0/32 || diff < -1.0/32 {
			t.Errorf("quantile(%v) = %v; want %v within 1/32", q, got, want)
		}
	}
	if got := h.quantile(1); got != exact[len(exact)-1] {
		t.Errorf("quantile(1) = %v; want the maximum %v", got, exact[len(exact)-1])
	}
	// Merging two halves gives the same as one histogram of all.
	var a, b histogram
	for i, d := range exact {
		if i%2 == 0 {
			a.add(d)
		} else {
			b.add(d)
		}
	}
	a.merge(&b)
	if a != h {
		t.Error("merge of two halves differs from the histogram of all")
	}
}

func TestHistogramSmallValuesExact(t *testing.T) {
	var h histogram
	for v := range 10 {
		h.add(time.Duration(v + 1))
	}
	if got := h.quantile(0.5); got != 5 {
		t.Errorf("quantile(0.5) of 1..10 ns = %v; want 5ns", got)
	}
}
