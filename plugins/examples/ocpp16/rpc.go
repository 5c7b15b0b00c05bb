package ocpp16

import (
	"bytes"
	"encoding/json"
)

// OCPP-J message types, the first element of every message.
const (
	typeCall       = 2 // [2, id, action, payload]
	typeCallResult = 3 // [3, id, payload]
	typeCallError  = 4 // [4, id, errorCode, errorDescription, errorDetails]
)

// maxIDLength bounds a message id: OCPP-J 1.6 makes it a string of at most
// 36 characters.
const maxIDLength = 36

// errorCode is one of the ten error codes OCPP-J 1.6 defines; a CALLERROR
// carries no other. 2.0.1's FormatViolation, MessageTypeNotSupported and
// RpcFrameworkError do not exist in 1.6, and OccurenceConstraintViolation
// is spelt as 1.6 spells it. This plugin never answers NotSupported,
// ProtocolError, SecurityError or GenericError, so they are not declared.
type errorCode string

const (
	// The action is not one this plugin handles.
	notImplemented errorCode = "NotImplemented"
	// The charge point's CALL was fine but we could not do our part (its
	// frame was not stored).
	internalError errorCode = "InternalError"
	// Not a well-formed message or payload: bad JSON, wrong elements, a
	// payload that is not an object, a property the schema does not have.
	formationViolation errorCode = "FormationViolation"
	// A value outside what its type allows: too long, not in the enum, not
	// a date-time, not a multiple of 0.1.
	propertyConstraintViolation errorCode = "PropertyConstraintViolation"
	// A required property missing, or too few items in an array.
	occurenceConstraintViolation errorCode = "OccurenceConstraintViolation"
	// A value of the wrong JSON type ("connectorId": "1").
	typeConstraintViolation errorCode = "TypeConstraintViolation"
)

// rpcError is a reason to answer a CALL with a CALLERROR; it is also how
// a payload that breaks its schema is described.
type rpcError struct {
	code        errorCode
	description string
}

func (e *rpcError) Error() string { return string(e.code) + ": " + e.description }

// header reads the type and id that begin every OCPP-J message. It reads
// token by token, so that it finds them even in a message whose JSON breaks
// further on: that CALL can still be answered with a FormationViolation.
// ok is false when there is no type and string id to read, and so nobody
// to answer.
func header(data []byte) (kind int, id string, ok bool) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if t, err := d.Token(); err != nil || t != json.Delim('[') {
		return 0, "", false
	}
	t, err := d.Token()
	n, isNumber := t.(json.Number)
	if err != nil || !isNumber {
		return 0, "", false
	}
	k, err := n.Int64()
	if err != nil {
		return 0, "", false
	}
	t, err = d.Token()
	id, isString := t.(string)
	if err != nil || !isString {
		return 0, "", false
	}
	return int(k), id, true
}

// encode writes one OCPP-J message: [kind, id, fields...].
func encode(kind int, id string, fields ...any) ([]byte, error) {
	return json.Marshal(append([]any{kind, id}, fields...))
}

// noDetails is the errorDetails of our CALLERRORs: OCPP-J wants an object,
// {} when there is nothing to add.
var noDetails = json.RawMessage("{}")
