package ocpp16

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/protocols"
)

// profile is a valid chargingProfile with limit as its one period's limit.
func profile(limit string) string {
	return `{"chargingProfileId":1,"transactionId":5,"stackLevel":0,"chargingProfilePurpose":"TxProfile",` +
		`"chargingProfileKind":"Relative","recurrencyKind":"Daily","validFrom":` + ts + `,"validTo":` + ts + `,` +
		`"chargingSchedule":{"duration":3600,"startSchedule":` + ts + `,"chargingRateUnit":"A",` +
		`"chargingSchedulePeriod":[{"startPeriod":0,"limit":` + limit + `,"numberPhases":3}],"minChargingRate":6.0}}`
}

// TestCommands sends MQTT commands: a valid one goes to the charge point as
// a CALL with its payload; any other is refused with an error that names
// the problem, and nothing is sent.
func TestCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, args string
		wantErr    string // "": sent
	}{
		{"RemoteStartTransaction", `{"idTag":"TAG-0001"}`, ""},
		{"RemoteStartTransaction", `{"connectorId":1,"idTag":"TAG-0001","chargingProfile":` + profile("16.2") + `}`, ""},
		{"RemoteStartTransaction", `{"idTag":"TAG-0001","chargingProfile":` + profile("32") + `}`, ""},
		{"RemoteStartTransaction", `{}`, "RemoteStartTransaction: OccurenceConstraintViolation: idTag: required"},
		{"RemoteStartTransaction", `{"idTag":"TAG-0001","chargingProfile":` + profile("6.25") + `}`,
			"RemoteStartTransaction: PropertyConstraintViolation: chargingProfile.chargingSchedule.chargingSchedulePeriod[0].limit: 6.25 is not a multiple of 0.1"},
		{"RemoteStartTransaction", `{"idTag":"TAG-0001","chargingProfile":{"chargingProfileId":1}}`,
			"RemoteStartTransaction: OccurenceConstraintViolation: chargingProfile.stackLevel: required"},
		{"RemoteStopTransaction", `{"transactionId":36000001}`, ""},
		{"RemoteStopTransaction", `{"transactionId":"36000001"}`, "RemoteStopTransaction: TypeConstraintViolation: transactionId: must be an integer, not a string"},
		{"Reset", `{"type":"Soft"}`, ""},
		{"Reset", `{"type":"Warm"}`, `Reset: PropertyConstraintViolation: type: "Warm" is not one of Hard, Soft`},
		{"Reset", ``, "Reset: OccurenceConstraintViolation: type: required"},
		{"Reset", `null`, "Reset: FormationViolation: the payload must be a JSON object"},
		{"ChangeAvailability", `{"connectorId":0,"type":"Inoperative"}`, ""},
		{"ChangeAvailability", `{"connectorId":0,"type":"Off"}`, `ChangeAvailability: PropertyConstraintViolation: type: "Off" is not one of Inoperative, Operative`},
		{"TriggerMessage", `{"requestedMessage":"StatusNotification","connectorId":1}`, ""},
		{"TriggerMessage", `{"requestedMessage":"StartTransaction"}`, "TriggerMessage: PropertyConstraintViolation: requestedMessage"},
		{"ChangeConfiguration", `{"key":"HeartbeatInterval","value":"60"}`, ""},
		{"ChangeConfiguration", `{"key":"HeartbeatInterval","value":60}`, "ChangeConfiguration: TypeConstraintViolation: value: must be a string, not a number"},
		{"GetConfiguration", ``, ""},
		{"GetConfiguration", `{"key":["HeartbeatInterval","MeterValueSampleInterval"]}`, ""},
		{"GetConfiguration", `{"key":"HeartbeatInterval"}`, "GetConfiguration: TypeConstraintViolation: key: must be an array, not a string"},
		{"GetConfiguration", `{"key":["` + strings.Repeat("k", 51) + `"]}`, "GetConfiguration: PropertyConstraintViolation: key[0]: 51 characters, at most 50 allowed"},
		{"ClearCache", ``, ""},
		{"ClearCache", `{"all":true}`, "ClearCache: FormationViolation: all: no such property"},
		{"UnlockConnector", `{"connectorId":1}`, ""},
		{"UnlockConnector", `{"connectorId":-1.5}`, "UnlockConnector: TypeConstraintViolation: connectorId: must be an integer, not a number with a fraction or exponent"},
		{"DataTransfer", `{"vendorId":"com.acme","messageId":"Tariff","data":"0.39"}`, ""},
		{"Heartbeat", `{}`, "Heartbeat is not an OCPP 1.6 Core action a central system sends"},
		{"SetChargingProfile", `{}`, "SetChargingProfile is not an OCPP 1.6 Core action a central system sends"},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.name, i), func(t *testing.T) {
			t.Parallel()
			s, out, _ := testSession(t, Protocol{})
			err := s.OnCommand(protocols.Command{Device: "CP1", ID: "m1", Name: tt.name, Args: json.RawMessage(tt.args)})
			sent := out.takeSent()
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Errorf("OnCommand = %v, want %q", err, tt.wantErr)
				}
				if len(sent) != 0 {
					t.Errorf("sent %v", sent)
				}
				return
			}
			if err != nil {
				t.Fatalf("OnCommand: %v", err)
			}
			want := `[2,"m1","` + tt.name + `",` + cmp.Or(tt.args, "{}") + `]`
			if len(sent) != 1 || sent[0] != want {
				t.Errorf("sent %v, want %s", sent, want)
			}
		})
	}
}

// TestCommandResults answers a Reset every way a charge point can, and
// checks the result published on MQTT.
func TestCommandResults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, answer string
		want         string // the result's payload; "" for none
	}{
		{"CALLRESULT", `[3,"m1",{"status":"Accepted"}]`, `{"id":"m1","ok":true,"data":{"status":"Accepted"}}`},
		{"CALLRESULT off the schema", `[3,"m1",{"status":"Maybe"}]`,
			`{"id":"m1","ok":false,"data":{"status":"Maybe"},"error":"invalid Reset confirmation: PropertyConstraintViolation: status: \"Maybe\" is not one of Accepted, Rejected"}`},
		{"CALLRESULT without status", `[3,"m1",{}]`,
			`{"id":"m1","ok":false,"data":{},"error":"invalid Reset confirmation: OccurenceConstraintViolation: status: required"}`},
		{"CALLRESULT with an extra element", `[3,"m1",{"status":"Accepted"},{}]`,
			`{"id":"m1","ok":false,"error":"FormationViolation: a CALLRESULT is [3, id, payload]"}`},
		{"CALLRESULT that is not JSON", `[3,"m1",{"status":`,
			`{"id":"m1","ok":false,"error":"FormationViolation: not valid JSON: unexpected end of JSON input"}`},
		{"CALLERROR", `[4,"m1","NotSupported","Reset not supported",{}]`,
			`{"id":"m1","ok":false,"data":{"errorCode":"NotSupported","errorDescription":"Reset not supported","errorDetails":{}},"error":"NotSupported: Reset not supported"}`},
		{"CALLERROR with details", `[4,"m1","InternalError","",{"cause":"relay stuck"}]`,
			`{"id":"m1","ok":false,"data":{"errorCode":"InternalError","errorDescription":"","errorDetails":{"cause":"relay stuck"}},"error":"InternalError"}`},
		{"CALLERROR without details", `[4,"m1","GenericError","busy"]`,
			`{"id":"m1","ok":false,"data":{"errorCode":"GenericError","errorDescription":"busy"},"error":"GenericError: busy"}`},
		{"CALLERROR with a numeric code", `[4,"m1",500,"oops",{}]`,
			`{"id":"m1","ok":false,"error":"FormationViolation: a CALLERROR is [4, id, errorCode, errorDescription, errorDetails]"}`},
		{"an answer to another id", `[3,"m9",{"status":"Accepted"}]`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, out, _ := testSession(t, Protocol{})
			if err := s.OnCommand(protocols.Command{Device: "CP1", ID: "m1", Name: "Reset", Args: json.RawMessage(`{"type":"Hard"}`)}); err != nil {
				t.Fatal(err)
			}
			if err := s.OnMessage(textMsg(tt.answer)); err != nil {
				t.Fatalf("OnMessage: %v", err)
			}
			frames := out.takeFrames()
			if tt.want == "" {
				if len(frames) != 0 {
					t.Fatalf("published %+v", frames)
				}
				return
			}
			if len(frames) != 1 || frames[0].Channel != "cmd/Reset/result" || frames[0].QoS != 1 {
				t.Fatalf("frames %+v, want one on cmd/Reset/result", frames)
			}
			if got := string(frames[0].Payload); got != tt.want {
				t.Errorf("result\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// commandSession is a session whose charge point is sent commands and
// answers them, driven step by step.
type commandSession struct {
	t   *testing.T
	s   *session
	out *fakeOutlet
	clk *fakeClock
}

func newCommandSession(t *testing.T, p Protocol) *commandSession {
	s, out, clk := testSession(t, p)
	return &commandSession{t, s, out, clk}
}

func (c *commandSession) command(id string) error {
	return c.s.OnCommand(protocols.Command{Device: "CP1", ID: id, Name: "Reset", Args: json.RawMessage(`{"type":"Soft"}`)})
}

func (c *commandSession) answer(id string) {
	c.t.Helper()
	if err := c.s.OnMessage(textMsg(`[3,"` + id + `",{"status":"Accepted"}]`)); err != nil {
		c.t.Fatal(err)
	}
}

// wire checks the CALLs sent since the last look, by id.
func (c *commandSession) wire(want ...string) {
	c.t.Helper()
	var got []string
	for _, msg := range c.out.takeSent() {
		elems := elements(c.t, msg)
		var id string
		if string(elems[0]) != "2" || json.Unmarshal(elems[1], &id) != nil {
			c.t.Fatalf("sent %s, want a CALL", msg)
		}
		got = append(got, id)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		c.t.Fatalf("CALLs sent %q, want %q", got, want)
	}
}

// results checks the results published since the last look, by id.
func (c *commandSession) results(want ...string) {
	c.t.Helper()
	var got []string
	for _, f := range c.out.takeFrames() {
		var r protocols.Result
		if err := json.Unmarshal(f.Payload, &r); err != nil {
			c.t.Fatal(err)
		}
		got = append(got, r.ID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		c.t.Fatalf("results %q, want %q", got, want)
	}
}

// TestOneCallAtATime: commands go out one after the other, each when the
// charge point has answered the one before, by CALLRESULT or CALLERROR.
func TestOneCallAtATime(t *testing.T) {
	t.Parallel()
	c := newCommandSession(t, Protocol{})
	for _, id := range []string{"m1", "m2", "m3"} {
		if err := c.command(id); err != nil {
			t.Fatal(err)
		}
	}
	c.wire("m1")
	c.answer("m2") // not on the wire: no answer to take
	c.results()
	c.wire()
	c.answer("m1")
	c.results("m1")
	c.wire("m2")
	if err := c.s.OnMessage(textMsg(`[4,"m2","NotSupported","",{}]`)); err != nil {
		t.Fatal(err)
	}
	c.results("m2")
	c.wire("m3")
	c.answer("m3")
	c.results("m3")
	c.wire()
	c.answer("m3") // twice
	c.results()
}

// TestQueueBound: behind the CALL on the wire, MaxQueued commands wait; more
// are refused until there is room.
func TestQueueBound(t *testing.T) {
	t.Parallel()
	c := newCommandSession(t, Protocol{MaxQueued: 2})
	for _, id := range []string{"m1", "m2", "m3"} {
		if err := c.command(id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.command("m4"); !errors.Is(err, protocols.ErrBusy) {
		t.Fatalf("the fourth command: %v, want ErrBusy", err)
	}
	c.wire("m1")
	c.answer("m1")
	if err := c.command("m5"); err != nil {
		t.Fatalf("a command once there is room: %v", err)
	}
	for _, id := range []string{"m2", "m3", "m5"} {
		c.wire(id)
		c.answer(id)
	}
	c.results("m1", "m2", "m3", "m5")
}

// TestCallTimeout: a CALL the charge point leaves unanswered frees the wire
// after the call timeout, without a result (the gateway reports the
// timeout); its late answer is dropped. A command that waited out its
// timeout in the queue is dropped unsent.
func TestCallTimeout(t *testing.T) {
	t.Parallel()
	c := newCommandSession(t, Protocol{CallTimeout: 30 * time.Second})
	for _, id := range []string{"m1", "m2"} { // m2 expires in the queue
		if err := c.command(id); err != nil {
			t.Fatal(err)
		}
	}
	c.clk.advance(10 * time.Second)
	if err := c.command("m3"); err != nil { // 10 s left when m1 expires
		t.Fatal(err)
	}
	c.wire("m1")
	c.clk.advance(20*time.Second - time.Nanosecond)
	c.wire()
	c.clk.advance(time.Nanosecond)
	c.wire("m3")
	c.results()
	c.answer("m1") // too late
	c.results()
	c.answer("m3")
	c.results("m3")

	if err := c.command("m4"); err != nil {
		t.Fatal(err)
	}
	c.wire("m4")
	c.clk.advance(30 * time.Second)
	c.results()
	if err := c.command("m5"); err != nil {
		t.Fatal(err)
	}
	c.wire("m5") // the wire was free again
}

// TestCloseForgetsCommands: after the connection ends, no timer sends
// anything.
func TestCloseForgetsCommands(t *testing.T) {
	t.Parallel()
	c := newCommandSession(t, Protocol{})
	for _, id := range []string{"m1", "m2"} {
		if err := c.command(id); err != nil {
			t.Fatal(err)
		}
	}
	c.wire("m1")
	c.s.Close(nil)
	c.clk.advance(time.Hour)
	c.wire()
	if err := c.command("m3"); !errors.Is(err, protocols.ErrClosed) {
		t.Errorf("a command after Close: %v, want ErrClosed", err)
	}
}

// TestSendFails: a CALL the connection cannot take refuses its command;
// the connection is ending, so later ones are refused too.
func TestSendFails(t *testing.T) {
	t.Parallel()
	c := newCommandSession(t, Protocol{})
	c.out.sendErr = protocols.ErrSendQueueFull
	if err := c.command("m1"); !errors.Is(err, protocols.ErrSendQueueFull) {
		t.Fatalf("OnCommand = %v, want ErrSendQueueFull", err)
	}
	c.out.sendErr = nil
	if err := c.command("m2"); !errors.Is(err, protocols.ErrClosed) {
		t.Fatalf("OnCommand = %v, want ErrClosed", err)
	}
}
