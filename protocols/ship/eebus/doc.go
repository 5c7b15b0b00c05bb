// Package eebus owns the wire format of SHIP, the EEBus transport (the
// section numbers below are those of the project's SHIP fact sheet,
// ship.md): the framing of a SHIP message, the EEBus JSON encoding, and
// the SHIP messages as Go types. The state machine, TLS, trust and mDNS are
// built on top of it elsewhere; this package holds no state and does no
// I/O.
//
// # Framing
//
// A SHIP message is one WebSocket binary message: a type byte (TypeInit,
// TypeControl, TypeData, TypeEnd) followed by the value, which for every
// type but init is UTF-8 JSON in the EEBus form. The CMI is exactly 00 00.
// Encode and Decode frame and unframe; Decode drops leading and trailing
// NUL bytes from the JSON, which some devices append.
//
// # The EEBus JSON encoding
//
// SHIP and SPINE are defined in XSD, and their JSON form does not map an
// XSD complex type to a JSON object:
//
//  1. an object becomes an array of single-key objects, one per present
//     field, in XSD sequence order;
//  2. the root element stays a one-key object;
//  3. arrays stay arrays, each element converted: a list of objects is an
//     array of arrays, a list of scalars is unchanged;
//  4. an empty object becomes [];
//  5. a SHIP data message's payload holds the SPINE message in its own root
//     form: {"datagram":[...]}, not [{"datagram":[...]}].
//
// For example the plain
//
//	{"connectionHello":{"phase":"ready","waiting":60000}}
//
// is, in EEBus form,
//
//	{"connectionHello":[{"phase":"ready"},{"waiting":60000}]}
//
// # Two ways through the codec
//
// ToEEBus and FromEEBus convert between plain JSON and the EEBus form
// without types, for logging, for MQTT and for messages no Go type exists
// for. Marshal and Unmarshal encode and decode Go values directly, driven
// by the type: struct fields in declaration order (declare them in XSD
// order), json struct tags for the names. Peek reads a message's name so
// that a caller can pick the type (NewMessage) before Unmarshal.
//
// Both ways read JSON tokens: a small scanner over input encoding/json has
// validated builds an order-preserving tree, and scalars are copied as
// written, so the only difference between input and output is structure.
// ship-go decodes by textual replacement instead ("[{" to "{", "},{" to
// ",", "}]" to "}", "[]" to "{}"), which breaks on whitespace between
// tokens, on strings that contain those sequences, and on empty lists;
// this package does not.
//
// # The ambiguity of []
//
// [] is both an empty object (rule 4) and an empty list. Unmarshal knows
// the target: [] decodes into a struct as an empty struct, into a slice as
// an empty slice. FromEEBus does not and makes every [] an empty object {},
// because empty objects are everywhere in SHIP and SPINE (every read
// request, accessMethodsRequest) and empty lists are rare; a real empty
// list such as "entity":[] therefore comes out as "entity":{}. Going the
// other way there is nothing to resolve: ToEEBus and Marshal write both an
// empty object and an empty list as []. So for any EEBus message x that
// FromEEBus accepts, FromEEBus(ToEEBus(FromEEBus(x))) equals FromEEBus(x),
// and for the canonical form e = ToEEBus(FromEEBus(x)), ToEEBus(FromEEBus(e))
// is e byte for byte.
//
// # Rule 5 without types
//
// ToEEBus cannot tell a root-form payload from the plain JSON alone, so it
// goes by position: the "payload" key directly inside the object of a root
// "data" key, when its value is an object with exactly one key (in practice
// "datagram"), is written in root form. FromEEBus needs no names: an object
// met where the EEBus form has values (not as an element of an encoded
// object) can only be a message in root form, and is converted as one.
// Marshal and Unmarshal keep Data.Payload as a json.RawMessage holding the
// SPINE message in its EEBus root form, so that it is decoded on its own.
//
// # SPINE element order
//
// Rule 1 keeps the XSD sequence order, which plain JSON does not have: the
// keys of a SPINE datagram published on MQTT come in whatever order the
// publisher's JSON library chose, and ToEEBus keeps that order. A SPINE
// peer may read the EEBus form strictly in sequence, so SPINEToEEBus puts
// the elements in order first, from a table of the SPINE schema
// (spineorder.txt, taken from the XSD): the envelope every datagram has
// (datagram, header, the feature addresses, payload, cmd, filter) and the
// data of the functions most use cases exchange. Keys the table does not
// know keep the publisher's order after the ones it knows, and nothing is
// dropped. FromEEBus needs no table: the EEBus form it reads is in order
// already.
//
// # Dependencies
//
// The package depends on nothing but the standard library, and on nothing
// else in wsgate: the SHIP protocol and the SPINE bridge depend on it.
package eebus
