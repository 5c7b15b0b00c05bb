package homeassistant

import (
	"encoding/json"
	"errors"
	"net/http"
)

// The admin API's routes: what the broker holds, and the removal of a
// device that is gone for good.
const (
	ListPattern   = "GET /homeassistant/devices"
	RemovePattern = "DELETE /homeassistant/devices/{id}"
)

// ServeList answers ListPattern: the devices announced under the
// gateway's nodes, as Announcements lists them.
func (d *Discovery) ServeList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, d.Announcements())
}

// ServeRemove answers RemovePattern: it removes the device from Home
// Assistant (Remove) and lists the topics cleared. A connected device or
// a local one is refused with 409, an unknown one with 404.
func (d *Discovery) ServeRemove(w http.ResponseWriter, r *http.Request) {
	topics, err := d.Remove(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrConnected), errors.Is(err, ErrLocal):
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
	case errors.Is(err, ErrUnknown):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"removed": topics})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}
