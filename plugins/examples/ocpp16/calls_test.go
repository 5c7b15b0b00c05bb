package ocpp16

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/protocols"
)

const (
	ts      = `"2026-03-01T12:00:00Z"`
	tsMilli = `"2026-03-01T12:00:00.123+01:00"`
)

// sample is a valid sampledValue, and meter a valid MeterValue.
const (
	sample = `{"value":"1234.5","context":"Sample.Periodic","format":"Raw","measurand":"Energy.Active.Import.Register","phase":"L1-N","location":"Outlet","unit":"kWh"}`
	meter  = `{"timestamp":` + ts + `,"sampledValue":[` + sample + `]}`
)

// TestCallsFromTheChargePoint sends each Core action of the charge point,
// valid and not: a valid one is published on its channel and answered, once
// its frame is safe, with a confirmation that fits the action's schema; an
// invalid one is answered at once with the CALLERROR OCPP-J 1.6 names, and
// not published.
func TestCallsFromTheChargePoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		action, payload string
		code            errorCode // "" for a valid payload
	}{
		{"Authorize", `{"idTag":"TAG-0001"}`, ""},
		{"Authorize", `{}`, occurenceConstraintViolation},
		{"Authorize", `{"idTag":42}`, typeConstraintViolation},
		{"Authorize", `{"idTag":null}`, typeConstraintViolation},
		{"Authorize", `{"idTag":"` + strings.Repeat("x", 21) + `"}`, propertyConstraintViolation},
		{"Authorize", `{"idTag":"` + strings.Repeat("ä", 20) + `"}`, ""}, // characters, not bytes
		{"Authorize", `{"idTag":"T","extra":1}`, formationViolation},

		{"BootNotification", `{"chargePointVendor":"ACME","chargePointModel":"W1"}`, ""},
		{"BootNotification", `{"chargePointVendor":"ACME","chargePointModel":"W1","chargePointSerialNumber":"S1","chargeBoxSerialNumber":"B1","firmwareVersion":"1.0","iccid":"89","imsi":"26","meterType":"M","meterSerialNumber":"MS"}`, ""},
		{"BootNotification", `{"chargePointVendor":"ACME"}`, occurenceConstraintViolation},
		{"BootNotification", `{"chargePointVendor":"` + strings.Repeat("v", 21) + `","chargePointModel":"W1"}`, propertyConstraintViolation},
		{"BootNotification", `{"chargePointVendor":"ACME","chargePointModel":"W1","firmwareVersion":"` + strings.Repeat("1", 51) + `"}`, propertyConstraintViolation},
		{"BootNotification", `{"chargePointVendor":"ACME","chargePointModel":"W1","iccid":8949}`, typeConstraintViolation},
		{"BootNotification", `{"chargePointVendor":"ACME","chargePointModel":"W1","chargepointSerialNumber":"S1"}`, formationViolation},

		{"Heartbeat", `{}`, ""},
		{"Heartbeat", `{"at":` + ts + `}`, formationViolation},

		{"StatusNotification", `{"connectorId":1,"errorCode":"NoError","status":"Available"}`, ""},
		{"StatusNotification", `{"connectorId":0,"errorCode":"OtherError","info":"door open","status":"Faulted","timestamp":` + tsMilli + `,"vendorId":"com.acme","vendorErrorCode":"E17"}`, ""},
		{"StatusNotification", `{"connectorId":1,"errorCode":"NoError"}`, occurenceConstraintViolation},
		{"StatusNotification", `{"connectorId":1,"errorCode":"NoError","status":"Open"}`, propertyConstraintViolation},
		{"StatusNotification", `{"connectorId":1,"errorCode":"Broken","status":"Available"}`, propertyConstraintViolation},
		{"StatusNotification", `{"connectorId":"1","errorCode":"NoError","status":"Available"}`, typeConstraintViolation},
		{"StatusNotification", `{"connectorId":1.0,"errorCode":"NoError","status":"Available"}`, typeConstraintViolation},
		{"StatusNotification", `{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"2026-03-01 12:00"}`, propertyConstraintViolation},
		{"StatusNotification", `{"connectorId":1,"errorCode":"NoError","status":"Available","timestamp":"2026-03-01T12:00:00"}`, propertyConstraintViolation},
		{"StatusNotification", `{"connectorId":1,"errorCode":"NoError","status":"Available","info":"` + strings.Repeat("i", 51) + `"}`, propertyConstraintViolation},

		{"MeterValues", `{"connectorId":1,"transactionId":7,"meterValue":[` + meter + `]}`, ""},
		{"MeterValues", `{"connectorId":1,"meterValue":[{"timestamp":` + ts + `,"sampledValue":[{"value":"50","measurand":"Frequency","unit":"Hertz"},{"value":"21","unit":"Celcius"},{"value":"21","unit":"Celsius"}]}]}`, ""},
		{"MeterValues", `{"meterValue":[` + meter + `]}`, occurenceConstraintViolation},
		{"MeterValues", `{"connectorId":1,"meterValue":[]}`, occurenceConstraintViolation},
		{"MeterValues", `{"connectorId":1,"meterValue":[{"timestamp":` + ts + `,"sampledValue":[]}]}`, occurenceConstraintViolation},
		{"MeterValues", `{"connectorId":1,"meterValue":[{"sampledValue":[` + sample + `]}]}`, occurenceConstraintViolation},
		{"MeterValues", `{"connectorId":1,"meterValue":[{"timestamp":` + ts + `,"sampledValue":[{"value":1234.5}]}]}`, typeConstraintViolation},
		{"MeterValues", `{"connectorId":1,"meterValue":[{"timestamp":` + ts + `,"sampledValue":[{"value":"1","measurand":"Energy"}]}]}`, propertyConstraintViolation},
		{"MeterValues", `{"connectorId":1,"meterValue":[{"timestamp":` + ts + `,"sampledValue":[{"value":"1","unit":"parsec"}]}]}`, propertyConstraintViolation},
		{"MeterValues", `{"connectorId":1,"meterValue":[{"timestamp":` + ts + `,"sampledValue":[{"value":"1","quality":"good"}]}]}`, formationViolation},
		{"MeterValues", `{"connectorId":1,"transactionId":"7","meterValue":[` + meter + `]}`, typeConstraintViolation},
		{"MeterValues", `{"connectorId":1,"meterValue":` + meter + `}`, typeConstraintViolation},

		{"StartTransaction", `{"connectorId":1,"idTag":"TAG-0001","meterStart":0,"timestamp":` + ts + `}`, ""},
		{"StartTransaction", `{"connectorId":1,"idTag":"TAG-0001","meterStart":1200,"reservationId":3,"timestamp":` + tsMilli + `}`, ""},
		{"StartTransaction", `{"connectorId":1,"idTag":"TAG-0001","timestamp":` + ts + `}`, occurenceConstraintViolation},
		{"StartTransaction", `{"connectorId":1,"idTag":"TAG-0001","meterStart":1.5,"timestamp":` + ts + `}`, typeConstraintViolation},
		{"StartTransaction", `{"connectorId":1,"idTag":"TAG-0001","meterStart":1e3,"timestamp":` + ts + `}`, typeConstraintViolation},
		{"StartTransaction", `{"connectorId":1,"idTag":"TAG-0001","meterStart":0,"timestamp":"now"}`, propertyConstraintViolation},
		{"StartTransaction", `{"connectorId":1,"idTag":"` + strings.Repeat("t", 21) + `","meterStart":0,"timestamp":` + ts + `}`, propertyConstraintViolation},
		{"StartTransaction", `{"connectorId":1,"idTag":"TAG-0001","meterStart":0,"timestamp":` + ts + `,"transactionId":5}`, formationViolation},

		{"StopTransaction", `{"meterStop":1500,"timestamp":` + ts + `,"transactionId":5}`, ""},
		{"StopTransaction", `{"idTag":"TAG-0001","meterStop":1500,"timestamp":` + ts + `,"transactionId":5,"reason":"EVDisconnected","transactionData":[` + meter + `]}`, ""},
		{"StopTransaction", `{"meterStop":1500,"timestamp":` + ts + `,"transactionId":2147483000,"transactionData":[]}`, ""}, // unknown to us
		{"StopTransaction", `{"meterStop":1500,"timestamp":` + ts + `}`, occurenceConstraintViolation},
		{"StopTransaction", `{"meterStop":1500,"timestamp":` + ts + `,"transactionId":5,"reason":"Stolen"}`, propertyConstraintViolation},
		{"StopTransaction", `{"meterStop":1500,"timestamp":` + ts + `,"transactionId":5,"transactionData":[{"timestamp":` + ts + `,"sampledValue":[{"value":"1","unit":"parsec"}]}]}`, propertyConstraintViolation},
		{"StopTransaction", `{"meterStop":"1500","timestamp":` + ts + `,"transactionId":5}`, typeConstraintViolation},

		{"DataTransfer", `{"vendorId":"com.acme"}`, ""},
		{"DataTransfer", `{"vendorId":"com.acme","messageId":"Tariff","data":"{\"eur\":0.39}"}`, ""},
		{"DataTransfer", `{"messageId":"Tariff"}`, occurenceConstraintViolation},
		{"DataTransfer", `{"vendorId":"com.acme","data":{"eur":0.39}}`, typeConstraintViolation},
		{"DataTransfer", `{"vendorId":"com.acme","messageId":"` + strings.Repeat("m", 51) + `"}`, propertyConstraintViolation},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.action, i), func(t *testing.T) {
			t.Parallel()
			s, out, _ := testSession(t, Protocol{})
			if err := s.OnMessage(textMsg(`[2,"c1","` + tt.action + `",` + tt.payload + `]`)); err != nil {
				t.Fatalf("OnMessage: %v", err)
			}
			frames := out.takeFrames()
			if tt.code != "" {
				if len(frames) != 0 {
					t.Errorf("published %d frames of an invalid CALL", len(frames))
				}
				expectCallError(t, out.takeSent(), "c1", tt.code)
				return
			}
			if len(frames) != 1 || frames[0].Channel != tt.action || frames[0].QoS != 1 {
				t.Fatalf("frames %+v, want one QoS 1 frame on %s", frames, tt.action)
			}
			if tt.action != "StartTransaction" && string(frames[0].Payload) != tt.payload {
				t.Errorf("published %s, want the payload as sent", frames[0].Payload)
			}
			if sent := out.takeSent(); len(sent) != 0 {
				t.Fatalf("answered %v before the frame was safe", sent)
			}
			frames[0].Ack(nil)
			sent := out.takeSent()
			if len(sent) != 1 {
				t.Fatalf("sent %v, want one CALLRESULT", sent)
			}
			elems := elements(t, sent[0])
			if len(elems) != 3 || string(elems[0]) != "3" || string(elems[1]) != `"c1"` {
				t.Fatalf("answered %s, want [3,\"c1\",{...}]", sent[0])
			}
			if _, err := actions[tt.action].confirmation.validate(elems[2]); err != nil {
				t.Errorf("the confirmation %s does not fit its schema: %v", elems[2], err)
			}
		})
	}
}

// expectCallError checks that sent is one CALLERROR for id with code and
// an object for details.
func expectCallError(t *testing.T, sent []string, id string, code errorCode) {
	t.Helper()
	if len(sent) != 1 {
		t.Fatalf("sent %v, want one CALLERROR", sent)
	}
	elems := elements(t, sent[0])
	var gotID, gotCode, description string
	if len(elems) != 5 || string(elems[0]) != "4" ||
		json.Unmarshal(elems[1], &gotID) != nil || json.Unmarshal(elems[2], &gotCode) != nil ||
		json.Unmarshal(elems[3], &description) != nil || string(elems[4]) != "{}" {
		t.Fatalf("sent %s, want [4, id, code, description, {}]", sent[0])
	}
	if gotID != id || gotCode != string(code) {
		t.Errorf("sent %s, want a CALLERROR %s for %q", sent[0], code, id)
	}
}

// TestMessageStructure sends messages that are not well-formed OCPP-J
// CALLs: those with an id to answer get a CALLERROR, the rest close the
// connection.
func TestMessageStructure(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("i", 37)
	tests := []struct {
		name, msg string
		code      errorCode // "": the connection closes with 1003
		id        string    // of the CALLERROR
	}{
		{"not JSON", `not json`, "", ""},
		{"an object", `{"type":2}`, "", ""},
		{"no id", `[2]`, "", ""},
		{"a numeric id", `[2,17,"Heartbeat",{}]`, "", ""},
		{"a fractional type", `[2.0,"c1","Heartbeat",{}]`, "", ""},
		{"JSON broken after the id", `[2,"c1","Heartbeat",{]`, formationViolation, "c1"},
		{"JSON cut short", `[2,"c1","Heartbeat",{}`, formationViolation, "c1"},
		{"no payload", `[2,"c1","Heartbeat"]`, formationViolation, "c1"},
		{"an element too many", `[2,"c1","Heartbeat",{},{}]`, formationViolation, "c1"},
		{"a numeric action", `[2,"c1",5,{}]`, formationViolation, "c1"},
		{"an array payload", `[2,"c1","Heartbeat",[]]`, formationViolation, "c1"},
		{"a null payload", `[2,"c1","Heartbeat",null]`, formationViolation, "c1"},
		{"an id of 37 characters", `[2,"` + long + `","Heartbeat",{}]`, formationViolation, long},
		{"message type 5", `[5,"c1","Heartbeat",{}]`, formationViolation, "c1"},
		{"message type 6 (2.1's SEND)", `[6,"c1","NotifyPeriodicEventStream",{}]`, formationViolation, "c1"},
		{"an unknown action", `[2,"c1","Teleport",{}]`, notImplemented, "c1"},
		{"a 1.6 action outside Core", `[2,"c1","FirmwareStatusNotification",{"status":"Idle"}]`, notImplemented, "c1"},
		{"a central system action", `[2,"c1","Reset",{"type":"Hard"}]`, notImplemented, "c1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, out, _ := testSession(t, Protocol{})
			err := s.OnMessage(textMsg(tt.msg))
			if tt.code == "" {
				var ce *protocols.CloseError
				if !errors.As(err, &ce) || ce.Code != protocols.CloseUnsupportedData {
					t.Fatalf("OnMessage = %v, want a close with 1003", err)
				}
				if sent := out.takeSent(); len(sent) != 0 {
					t.Errorf("sent %v", sent)
				}
				return
			}
			if err != nil {
				t.Fatalf("OnMessage: %v", err)
			}
			expectCallError(t, out.takeSent(), tt.id, tt.code)
			if frames := out.takeFrames(); len(frames) != 0 {
				t.Errorf("published %+v", frames)
			}
		})
	}
}

func TestBinaryMessageCloses(t *testing.T) {
	t.Parallel()
	s, _, _ := testSession(t, Protocol{})
	err := s.OnMessage(protocols.Message{Type: protocols.Binary, Data: []byte(`[2,"c1","Heartbeat",{}]`)})
	var ce *protocols.CloseError
	if !errors.As(err, &ce) || ce.Code != protocols.CloseUnsupportedData {
		t.Fatalf("OnMessage = %v, want a close with 1003", err)
	}
}

// TestRefusedFrame: a CALL whose frame the gateway does not take is
// answered InternalError, once, however the refusal arrives.
func TestRefusedFrame(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		viaAck   bool // the refusal comes through the Ack as well as returned
		refusal  error
		wantText string
	}{
		{"returned", false, protocols.ErrBusy, "busy"},
		{"returned and acknowledged", true, protocols.ErrForbidden, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, out, _ := testSession(t, Protocol{})
			out.refuse, out.ackRefusal = tt.refusal, tt.viaAck
			if err := s.OnMessage(textMsg(`[2,"c1","Heartbeat",{}]`)); err != nil {
				t.Fatalf("OnMessage: %v", err)
			}
			sent := out.takeSent()
			expectCallError(t, sent, "c1", internalError)
			if !strings.Contains(sent[0], tt.wantText) {
				t.Errorf("answered %s, want the reason %q", sent[0], tt.wantText)
			}
		})
	}
	t.Run("acknowledged with an error", func(t *testing.T) {
		t.Parallel()
		s, out, _ := testSession(t, Protocol{})
		if err := s.OnMessage(textMsg(`[2,"c1","Heartbeat",{}]`)); err != nil {
			t.Fatal(err)
		}
		out.takeFrames()[0].Ack(errors.New("spool full"))
		expectCallError(t, out.takeSent(), "c1", internalError)
	})
}

// TestSecondCallBeforeTheAnswer: a CALL sent while the previous one awaits
// its answer is handled too, and each is answered by its own id.
func TestSecondCallBeforeTheAnswer(t *testing.T) {
	t.Parallel()
	s, out, _ := testSession(t, Protocol{})
	for _, msg := range []string{`[2,"c1","Heartbeat",{}]`, `[2,"c2","Authorize",{"idTag":"T"}]`} {
		if err := s.OnMessage(textMsg(msg)); err != nil {
			t.Fatal(err)
		}
	}
	frames := out.takeFrames()
	if len(frames) != 2 || frames[0].Channel != "Heartbeat" || frames[1].Channel != "Authorize" {
		t.Fatalf("frames %+v, want Heartbeat then Authorize", frames)
	}
	frames[1].Ack(nil)
	frames[0].Ack(nil)
	sent := out.takeSent()
	if len(sent) != 2 || !strings.HasPrefix(sent[0], `[3,"c2",{"idTagInfo"`) || !strings.HasPrefix(sent[1], `[3,"c1",{"currentTime"`) {
		t.Fatalf("sent %v, want the answers to c2 and c1", sent)
	}
}

func TestDataTransferVendors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		vendor, want string
	}{
		{"com.acme", "Accepted"},
		{"COM.ACME", "Accepted"}, // a CiString
		{"org.example", "Accepted"},
		{"com.other", "UnknownVendorId"},
	}
	for _, tt := range tests {
		t.Run(tt.vendor, func(t *testing.T) {
			t.Parallel()
			s, out, _ := testSession(t, Protocol{DataTransferVendors: []string{"com.Acme", "org.example"}})
			payload := `{"vendorId":"` + tt.vendor + `","data":"x"}`
			if err := s.OnMessage(textMsg(`[2,"c1","DataTransfer",` + payload + `]`)); err != nil {
				t.Fatal(err)
			}
			frames := out.takeFrames()
			if len(frames) != 1 || frames[0].Channel != "DataTransfer" || string(frames[0].Payload) != payload {
				t.Fatalf("frames %+v, want the request published on DataTransfer", frames)
			}
			frames[0].Ack(nil)
			if sent := out.takeSent(); len(sent) != 1 || sent[0] != `[3,"c1",{"status":"`+tt.want+`"}]` {
				t.Errorf("answered %v, want status %s", sent, tt.want)
			}
		})
	}
}

// TestTransactions runs charging sessions: every StartTransaction gets a
// new id, published with the request, also after the charge point
// reconnects; StopTransaction is acknowledged for any id, with idTagInfo
// when it names an idTag.
func TestTransactions(t *testing.T) {
	t.Parallel()
	p := Protocol{ids: newTransactionIDs()}
	start := `[2,"s","StartTransaction",{"connectorId":1,"idTag":"TAG-0001","meterStart":0,"timestamp":` + ts + `}]`
	seen := map[int]bool{}
	for conn := range 2 {
		s, out, _ := testSession(t, p) // the same charge point, reconnected
		for range 2 {
			if err := s.OnMessage(textMsg(start)); err != nil {
				t.Fatal(err)
			}
			frames := out.takeFrames()
			frames[0].Ack(nil)
			var answer struct {
				IDTagInfo     struct{ Status string }
				TransactionID int
			}
			elems := elements(t, out.takeSent()[0])
			if err := json.Unmarshal(elems[2], &answer); err != nil {
				t.Fatal(err)
			}
			id := answer.TransactionID
			if id <= 0 || seen[id] || answer.IDTagInfo.Status != "Accepted" {
				t.Fatalf("connection %d: answered %s; ids so far %v", conn, elems[2], seen)
			}
			seen[id] = true
			want := fmt.Sprintf(`{"connectorId":1,"idTag":"TAG-0001","meterStart":0,"timestamp":%s,"transactionId":%d}`, ts, id)
			if string(frames[0].Payload) != want {
				t.Errorf("published %s, want %s", frames[0].Payload, want)
			}
		}
	}

	s, out, _ := testSession(t, p)
	tests := []struct {
		payload, answer string
	}{
		{`{"meterStop":10,"timestamp":` + ts + `,"transactionId":1}`, `{}`},
		{`{"idTag":"TAG-0001","meterStop":10,"timestamp":` + ts + `,"transactionId":1}`, `{"idTagInfo":{"status":"Accepted"}}`},
	}
	for _, tt := range tests {
		if err := s.OnMessage(textMsg(`[2,"e","StopTransaction",` + tt.payload + `]`)); err != nil {
			t.Fatal(err)
		}
		out.takeFrames()[0].Ack(nil)
		if sent := out.takeSent(); len(sent) != 1 || sent[0] != `[3,"e",`+tt.answer+`]` {
			t.Errorf("StopTransaction %s answered %v, want %s", tt.payload, sent, tt.answer)
		}
	}
}

func TestWithTransactionID(t *testing.T) {
	t.Parallel()
	tests := []struct{ payload, want string }{
		{`{"connectorId":1}`, `{"connectorId":1,"transactionId":7}`},
		{"{\"connectorId\": 1 }\n", `{"connectorId": 1 ,"transactionId":7}`},
	}
	for _, tt := range tests {
		if got := withTransactionID(json.RawMessage(tt.payload), 7); string(got) != tt.want {
			t.Errorf("withTransactionID(%q) = %s, want %s", tt.payload, got, tt.want)
		}
	}
}
