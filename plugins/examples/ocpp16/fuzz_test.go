package ocpp16

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

// codes16 are the error codes of OCPP-J 1.6, the only ones a CALLERROR may
// carry.
var codes16 = []string{
	"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
	"FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
	"TypeConstraintViolation", "GenericError",
}

// FuzzOnMessage: whatever a charge point sends, the session either closes
// with 1003 or answers with CALLRESULTs that fit their action's
// confirmation and CALLERRORs with a 1.6 error code.
func FuzzOnMessage(f *testing.F) {
	for _, seed := range []string{
		`[2,"1","Heartbeat",{}]`,
		`[2,"1","BootNotification",{"chargePointVendor":"ACME","chargePointModel":"W1"}]`,
		`[2,"1","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,"timestamp":"2026-03-01T12:00:00Z"}]`,
		`[2,"1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-03-01T12:00:00Z","sampledValue":[{"value":"1"}]}]}]`,
		`[2,"1","DataTransfer",{"vendorId":"v"}]`,
		`[2,"1","Teleport",{}]`,
		`[5,"1","Heartbeat",{}]`,
		`[2,"1","Heartbeat",{]`,
		`[3,"m1",{"status":"Accepted"}]`,
		`[4,"m1","NotSupported","",{}]`,
		`not json`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		s, out, _ := testSession(t, Protocol{})
		if err := s.OnCommand(protocols.Command{ID: "m1", Name: "Reset", Args: json.RawMessage(`{"type":"Soft"}`)}); err != nil {
			t.Fatal(err)
		}
		out.takeSent()
		err := s.OnMessage(textMsg(msg))
		var ce *protocols.CloseError
		if err != nil && (!errors.As(err, &ce) || ce.Code != protocols.CloseUnsupportedData) {
			t.Fatalf("OnMessage(%q) = %v", msg, err)
		}
		action := ""
		for _, fr := range out.takeFrames() {
			if fr.Ack != nil {
				action = fr.Channel
				fr.Ack(nil)
			}
		}
		for _, sent := range out.takeSent() {
			elems := elements(t, sent)
			switch string(elems[0]) {
			case "3":
				if _, err := actions[action].confirmation.validate(elems[2]); err != nil {
					t.Errorf("%q answered %s: %v", msg, sent, err)
				}
			case "4":
				var code string
				if json.Unmarshal(elems[2], &code) != nil || !slices.Contains(codes16, code) || len(elems) != 5 {
					t.Errorf("%q answered %s: not a 1.6 CALLERROR", msg, sent)
				}
			default:
				t.Errorf("%q answered %s", msg, sent)
			}
		}
	})
}
