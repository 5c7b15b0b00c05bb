package ocpp16

// The OCPP 1.6 JSON schemas of the actions this plugin speaks, as data:
// everything the plugin knows about payloads is in this file. The source is
// the OCA's schemas of the 1.6 errata v4 (2019-12-05) as mobilityhouse/ocpp
// ships them (ocpp/v16/schemas, commit b0e0b07f). Two deliberate
// differences, both from the errata's data types, which the schema files
// apply unevenly: one MeterValue serves MeterValues and
// StopTransaction.transactionData, so both take the unit "Hertz" and both
// want at least one sampledValue.

// action is an OCPP 1.6 action: who may send its CALL, and the shapes of
// its request and confirmation payloads.
type action struct {
	senders      party
	request      shape
	confirmation shape
}

// party is a side of OCPP, as a set.
type party uint8

const (
	chargePoint   party = 1 << iota // the charge point; the plugin answers
	centralSystem                   // the central system: the plugin, for MQTT
)

// lookup returns the action called name if from may send its CALL.
func lookup(name string, from party) (action, bool) {
	a, ok := actions[name]
	return a, ok && a.senders&from != 0
}

// actions are the Core profile's actions, and TriggerMessage (Remote
// Trigger profile).
var actions = map[string]action{
	// Charge point to central system: the plugin answers. DataTransfer goes
	// both ways.
	"Authorize": {chargePoint,
		object(required("idTag", idToken)),
		object(required("idTagInfo", idTagInfo)),
	},
	"BootNotification": {chargePoint,
		object(
			required("chargePointVendor", text(20)),
			required("chargePointModel", text(20)),
			optional("chargePointSerialNumber", text(25)),
			optional("chargeBoxSerialNumber", text(25)),
			optional("firmwareVersion", text(50)),
			optional("iccid", text(20)),
			optional("imsi", text(20)),
			optional("meterType", text(25)),
			optional("meterSerialNumber", text(25)),
		),
		object(
			required("status", oneOf("Accepted", "Pending", "Rejected")),
			required("currentTime", dateTime),
			required("interval", integer),
		),
	},
	"DataTransfer": {chargePoint | centralSystem,
		object(
			required("vendorId", text(255)),
			optional("messageId", text(50)),
			optional("data", anyText),
		),
		object(
			required("status", oneOf("Accepted", "Rejected", "UnknownMessageId", "UnknownVendorId")),
			optional("data", anyText),
		),
	},
	"Heartbeat": {chargePoint,
		object(),
		object(required("currentTime", dateTime)),
	},
	"MeterValues": {chargePoint,
		object(
			required("connectorId", integer),
			optional("transactionId", integer),
			required("meterValue", list(meterValue, 1)),
		),
		object(),
	},
	"StartTransaction": {chargePoint,
		object(
			required("connectorId", integer),
			required("idTag", idToken),
			required("meterStart", integer),
			optional("reservationId", integer),
			required("timestamp", dateTime),
		),
		object(
			required("idTagInfo", idTagInfo),
			required("transactionId", integer),
		),
	},
	"StatusNotification": {chargePoint,
		object(
			required("connectorId", integer),
			required("errorCode", oneOf("ConnectorLockFailure", "EVCommunicationError", "GroundFailure",
				"HighTemperature", "InternalError", "LocalListConflict", "NoError", "OtherError",
				"OverCurrentFailure", "PowerMeterFailure", "PowerSwitchFailure", "ReaderFailure",
				"ResetFailure", "UnderVoltage", "OverVoltage", "WeakSignal")),
			optional("info", text(50)),
			required("status", oneOf("Available", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV",
				"Finishing", "Reserved", "Unavailable", "Faulted")),
			optional("timestamp", dateTime),
			optional("vendorId", text(255)),
			optional("vendorErrorCode", text(50)),
		),
		object(),
	},
	"StopTransaction": {chargePoint,
		object(
			optional("idTag", idToken),
			required("meterStop", integer),
			required("timestamp", dateTime),
			required("transactionId", integer),
			optional("reason", oneOf("EmergencyStop", "EVDisconnected", "HardReset", "Local", "Other",
				"PowerLoss", "Reboot", "Remote", "SoftReset", "UnlockCommand", "DeAuthorized")),
			optional("transactionData", list(meterValue, 0)),
		),
		object(optional("idTagInfo", idTagInfo)),
	},

	// Central system to charge point: commands from MQTT.
	"ChangeAvailability": {centralSystem,
		object(
			required("connectorId", integer),
			required("type", oneOf("Inoperative", "Operative")),
		),
		status("Accepted", "Rejected", "Scheduled"),
	},
	"ChangeConfiguration": {centralSystem,
		object(
			required("key", text(50)),
			required("value", text(500)),
		),
		status("Accepted", "Rejected", "RebootRequired", "NotSupported"),
	},
	"ClearCache": {centralSystem, object(), status("Accepted", "Rejected")},
	"GetConfiguration": {centralSystem,
		object(optional("key", list(text(50), 0))),
		object(
			optional("configurationKey", list(object(
				required("key", text(50)),
				required("readonly", boolean),
				optional("value", text(500)),
			), 0)),
			optional("unknownKey", list(text(50), 0)),
		),
	},
	"RemoteStartTransaction": {centralSystem,
		object(
			optional("connectorId", integer),
			required("idTag", idToken),
			optional("chargingProfile", chargingProfile),
		),
		status("Accepted", "Rejected"),
	},
	"RemoteStopTransaction": {centralSystem,
		object(required("transactionId", integer)),
		status("Accepted", "Rejected"),
	},
	"Reset": {centralSystem,
		object(required("type", oneOf("Hard", "Soft"))),
		status("Accepted", "Rejected"),
	},
	"TriggerMessage": {centralSystem,
		object(
			required("requestedMessage", oneOf("BootNotification", "DiagnosticsStatusNotification",
				"FirmwareStatusNotification", "Heartbeat", "MeterValues", "StatusNotification")),
			optional("connectorId", integer),
		),
		status("Accepted", "Rejected", "NotImplemented"),
	},
	"UnlockConnector": {centralSystem,
		object(required("connectorId", integer)),
		status("Unlocked", "UnlockFailed", "NotSupported"),
	},
}

// The data types the actions share.
var (
	idToken   = text(20)
	idTagInfo = object(
		optional("expiryDate", dateTime),
		optional("parentIdTag", idToken),
		required("status", oneOf("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")),
	)
	meterValue = object(
		required("timestamp", dateTime),
		required("sampledValue", list(object(
			required("value", anyText),
			optional("context", oneOf("Interruption.Begin", "Interruption.End", "Sample.Clock",
				"Sample.Periodic", "Transaction.Begin", "Transaction.End", "Trigger", "Other")),
			optional("format", oneOf("Raw", "SignedData")),
			optional("measurand", oneOf("Energy.Active.Export.Register", "Energy.Active.Import.Register",
				"Energy.Reactive.Export.Register", "Energy.Reactive.Import.Register",
				"Energy.Active.Export.Interval", "Energy.Active.Import.Interval",
				"Energy.Reactive.Export.Interval", "Energy.Reactive.Import.Interval",
				"Power.Active.Export", "Power.Active.Import", "Power.Offered", "Power.Reactive.Export",
				"Power.Reactive.Import", "Power.Factor", "Current.Import", "Current.Export",
				"Current.Offered", "Voltage", "Frequency", "Temperature", "SoC", "RPM")),
			optional("phase", oneOf("L1", "L2", "L3", "N", "L1-N", "L2-N", "L3-N", "L1-L2", "L2-L3", "L3-L1")),
			optional("location", oneOf("Cable", "EV", "Inlet", "Outlet", "Body")),
			// Celcius is the 1.6 schemas' misspelling, Celsius the
			// errata's; chargers send either.
			optional("unit", oneOf("Wh", "kWh", "varh", "kvarh", "W", "kW", "VA", "kVA", "var", "kvar",
				"A", "V", "K", "Celcius", "Celsius", "Fahrenheit", "Percent", "Hertz")),
		), 1)),
	)
	chargingProfile = object(
		required("chargingProfileId", integer),
		optional("transactionId", integer),
		required("stackLevel", integer),
		required("chargingProfilePurpose", oneOf("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")),
		required("chargingProfileKind", oneOf("Absolute", "Recurring", "Relative")),
		optional("recurrencyKind", oneOf("Daily", "Weekly")),
		optional("validFrom", dateTime),
		optional("validTo", dateTime),
		required("chargingSchedule", object(
			optional("duration", integer),
			optional("startSchedule", dateTime),
			required("chargingRateUnit", oneOf("A", "W")),
			required("chargingSchedulePeriod", list(object(
				required("startPeriod", integer),
				required("limit", decimal1),
				optional("numberPhases", integer),
			), 0)),
			optional("minChargingRate", decimal1),
		)),
	)
)

// Shapes of single values.
var (
	anyText  = shape{kind: kindString}
	dateTime = shape{kind: kindString, dateTime: true}
	integer  = shape{kind: kindInteger}
	boolean  = shape{kind: kindBoolean}
	// decimal1 is a number with at most one decimal (charging limits).
	decimal1 = shape{kind: kindNumber, multipleOf: 0.1}
)

// text is a string of at most maxLength characters (1.6's CiStringN).
func text(maxLength int) shape { return shape{kind: kindString, maxLength: maxLength} }

func oneOf(values ...string) shape { return shape{kind: kindString, enum: values} }

func object(fields ...field) shape { return shape{kind: kindObject, fields: fields} }

func list(item shape, minItems int) shape {
	return shape{kind: kindArray, items: &item, minItems: minItems}
}

func required(name string, s shape) field { return field{name, true, s} }

func optional(name string, s shape) field { return field{name, false, s} }

// status is the confirmation most commands get: {"status": one of values}.
func status(values ...string) shape { return object(required("status", oneOf(values...))) }
