package done

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/wsgate/wsgate/protocols"
)

// description turns a hello's model, fw and caps into what the device
// attaches with; nil when the hello has none of them. What is wrong is
// left out and said in problems, for an error reply: a device whose
// description has a mistake still connects and publishes.
//
// caps is decoded with encoding/json rather than by hand like the rest of
// done: a hello comes once per connection, so speed buys nothing here.
// Field names match exactly, as everywhere in done, and of a field given
// twice the last counts.
//
// With the envelope on, a pub's data is published inside {"data": ...}, so
// an entity's value is looked for there.
func description(msg *inbound, envelope bool) (d *protocols.Description, problems []string) {
	caps := msg.Caps
	if string(caps) == "null" {
		caps = nil
	}
	if msg.Model == "" && msg.FW == "" && len(caps) == 0 {
		return nil, nil
	}
	d = &protocols.Description{Model: msg.Model, Firmware: msg.FW}
	for _, err := range unjoin(d.Validate()) { // the texts: there are no entities yet
		var fe *protocols.FieldError
		if !errors.As(err, &fe) {
			continue
		}
		switch fe.Field {
		case "model":
			d.Model = ""
		case "firmware":
			d.Firmware, fe = "", &protocols.FieldError{Field: "fw", Problem: fe.Problem}
		}
		problems = append(problems, fe.Error())
	}
	if len(caps) == 0 {
		return d, problems
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(caps, &entries); err != nil {
		return d, append(problems, "caps: must be an array of objects, not "+kind(caps))
	}
	if len(entries) > protocols.MaxEntities {
		problems = append(problems, fmt.Sprintf("caps: %d entries, only the first %d are used", len(entries), protocols.MaxEntities))
		entries = entries[:protocols.MaxEntities]
	}
	keys := map[string]int{}
	for i, raw := range entries {
		at := fmt.Sprintf("caps[%d]", i)
		e, err := capEntity(raw)
		if err == nil && envelope && e.Channel != "" && e.Channel != protocols.StatusChannel {
			e.Field = strings.TrimSuffix("data."+e.Field, ".")
		}
		if err == nil {
			err = e.Validate()
		}
		if err != nil {
			for _, err := range unjoin(err) {
				var fe *protocols.FieldError
				if errors.As(err, &fe) {
					err = (&protocols.FieldError{Field: capField(fe.Field), Problem: fe.Problem}).In(at)
				} else {
					err = fmt.Errorf("%s: %w", at, err)
				}
				problems = append(problems, err.Error())
			}
			continue
		}
		if j, dup := keys[e.Key]; dup {
			problems = append(problems, fmt.Sprintf("%s.key: %q is also the key of caps[%d]", at, e.Key, j))
			continue
		}
		keys[e.Key] = i
		d.Entities = append(d.Entities, e)
	}
	return d, problems
}

// capEntity decodes one entry of caps.
func capEntity(raw json.RawMessage) (protocols.Entity, error) {
	var e protocols.Entity
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return e, fmt.Errorf("must be an object, not %s", kind(raw))
	}
	var errs []error
	text := func(name string, dst *string) {
		if v, ok := fields[name]; ok && string(v) != "null" {
			if json.Unmarshal(v, dst) != nil {
				errs = append(errs, &protocols.FieldError{Field: name, Problem: "must be a string, not " + kind(v)})
			}
		}
	}
	number := func(name string, dst **float64) {
		if v, ok := fields[name]; ok && string(v) != "null" {
			var f float64
			if json.Unmarshal(v, &f) != nil {
				errs = append(errs, &protocols.FieldError{Field: name, Problem: "must be a number, not " + kind(v)})
				return
			}
			*dst = &f
		}
	}
	value := func(name string, dst *json.RawMessage) {
		if v, ok := fields[name]; ok && string(v) != "null" {
			*dst = v // checked by Validate
		}
	}
	text("key", &e.Key)
	text("name", &e.Name)
	text("component", &e.Component)
	text("ch", &e.Channel)
	text("field", &e.Field)
	text("cmd", &e.Command)
	text("unit", &e.Unit)
	text("device_class", &e.DeviceClass)
	text("state_class", &e.StateClass)
	text("category", &e.Category)
	value("on", &e.On)
	value("off", &e.Off)
	number("min", &e.Min)
	number("max", &e.Max)
	number("step", &e.Step)
	return e, errors.Join(errs...)
}

// capField is the name in caps of an Entity field.
func capField(field string) string {
	switch field {
	case "channel":
		return "ch"
	case "command":
		return "cmd"
	}
	return field
}

// describeProblems is the reason of the error reply to a hello whose
// description had problems.
func describeProblems(problems []string) string {
	const most = 8 // a reply a device can show; the first problems say what to fix
	more := ""
	if len(problems) > most {
		more = fmt.Sprintf("; and %d more", len(problems)-most)
		problems = problems[:most]
	}
	return "hello: left out: " + strings.Join(problems, "; ") + more
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
