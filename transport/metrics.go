package transport

import (
	"net/http"

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
	socketsOpen *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpacket_messages_acked_total",
			Help: "Messages acknowledged to their sender (durable), by author kind.",
		}, []string{"author"}),
		socketsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatpacket_sockets_open",
			Help: "Open WebSocket connections on this node, by kind (widget, agent).",
		}, []string{"kind"}),
	}
	// Every series from the start, so a scrape shows zeros, not gaps.
	for _, kind := range []string{"visitor", "agent"} {
		m.posts.WithLabelValues(kind)
	}
	for _, kind := range []string{"widget", "agent"} {
		m.socketsOpen.WithLabelValues(kind)
	}
	m.registry.MustRegister(m.posts, m.socketsOpen,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
