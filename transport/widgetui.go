package transport

import "net/http"

// registerWidgetUI serves the widget: the loader a business pastes into
// its site, and the chat frame it opens.
func (a *API) registerWidgetUI(s *http.ServeMux) {}
