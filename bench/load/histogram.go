package load

// A latency histogram with bounded memory and bounded error, in the
// manner of HdrHistogram: values below 64 ns are counted exactly; above,
// each power of two is cut into 32 equal buckets, so a percentile read back
// is within 1/64 of the true value (the middle of a bucket at most 1/32
// wide). A run at 30k msgs/s for a minute keeps one 10 KiB array per
// second instead of two million samples.

import (
	"math/bits"
	"time"
)

const (
	histExact   = 64 // values below are their own bucket
	histSub     = 32 // buckets per power of two above
	histMaxBits = 43 // up to 2^43 ns, about 2.4 hours; longer latencies count as that
	histBuckets = histExact + (histMaxBits-6)*histSub
)

// histogram counts durations; the zero value is empty. It is not safe for
// concurrent use: the series guards it.
type histogram struct {
	counts [histBuckets]uint32
	n      uint64
	max    time.Duration
}

func histIndex(v uint64) int {
	if v < histExact {
		return int(v)
	}
	n := bits.Len64(v)
	if n > histMaxBits {
		return histBuckets - 1
	}
	shift := n - 6
	return histExact + (shift-1)*histSub + int(v>>shift) - histSub
}

// histValue is the middle of bucket i.
func histValue(i int) uint64 {
	if i < histExact {
		return uint64(i)
	}
	shift := (i-histExact)/histSub + 1
	lo := uint64((i-histExact)%histSub+histSub) << shift
	return lo + (uint64(1)<<shift)/2
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the value at or below which fraction q (0 to 1) of the
// counted values lie; 0 when nothing was counted. The maximum is exact.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	// The rank of the value wanted, 1-based: the smallest value with at
	// least q of all values at or below it.
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			return min(time.Duration(histValue(i)), h.max)
		}
	}
	return h.max
}
