package transport

import "net/http"

// registerDashboard serves the agents' dashboard.
func (a *API) registerDashboard(s *http.ServeMux) {}
