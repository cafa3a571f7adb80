package transport

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the node's Prometheus metrics, on a registry of their own:
// nothing here touches the process-global default registry or
// http.DefaultServeMux.
type metrics struct {
	registry    *prometheus.Registry
	posts       *prometheus.CounterVec
	postSeconds *prometheus.HistogramVec
	socketsOpen *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpacket_messages_acked_total",
			Help: "Messages acknowledged to their sender (durable), by author kind.",
		}, []string{"author"}),
		postSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chatpacket_post_duration_seconds",
			Help: "Time to make a message durable: from the post's call to its conversation grain to the answer (replicated and applied), by author kind. The ack follows at once.",
			// 0.25 ms to about 8 s.
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16),
		}, []string{"author"}),
		socketsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatpacket_sockets_open",
			Help: "Open WebSocket connections on this node, by kind (widget, agent).",
		}, []string{"kind"}),
	}
	// Every series from the start, so a scrape shows zeros, not gaps.
	for _, kind := range []string{"visitor", "agent"} {
		m.posts.WithLabelValues(kind)
		m.postSeconds.WithLabelValues(kind)
	}
	for _, kind := range []string{"widget", "agent"} {
		m.socketsOpen.WithLabelValues(kind)
	}
	m.registry.MustRegister(m.posts, m.postSeconds, m.socketsOpen,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// posted counts a durable message of an author kind ("visitor", "agent")
// and the time since its post began.
func (m *metrics) posted(kind string, began time.Time) {
	m.posts.WithLabelValues(kind).Inc()
	m.postSeconds.WithLabelValues(kind).Observe(time.Since(began).Seconds())
}
