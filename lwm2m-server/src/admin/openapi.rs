//! The OpenAPI 3 document of the admin API, written by hand: the API is
//! small, and a derive framework would add a dependency and macros to every
//! handler for a document a test checks against [`super::ROUTES`] anyway.

use serde_json::{json, Value};

fn param(name: &str, location: &str, required: bool, description: &str) -> Value {
    json!({
        "name": name, "in": location, "required": required,
        "description": description, "schema": {"type": "string"},
    })
}

fn ep() -> Value {
    param("endpoint", "path", true, "Endpoint client name.")
}

fn path() -> Value {
    param(
        "path",
        "path",
        true,
        "LwM2M path without the leading slash, slashes kept: 3, 3/0, 3/0/1, 3/0/7/1.",
    )
}

fn timeout() -> Value {
    param(
        "timeout",
        "query",
        false,
        "Seconds to wait for the device (default 5, at most 3600).",
    )
}

fn format() -> Value {
    param(
        "format",
        "query",
        false,
        "Content format: TEXT, OPAQUE, CBOR, TLV, JSON, SENML_JSON, SENML_CBOR, LWM2M_CBOR or a number.",
    )
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
    })
}

/// Responses every device-management operation can give.
fn dm_responses() -> Value {
    json!({
        "200": json_response("The device answered (success or a CoAP error, see status/code).", "DeviceResponse"),
        "202": json_response("The client is a sleeping queue-mode client: the request is queued and its result comes as a REQUEST_RESULT event.", "Queued"),
        "400": json_response("Bad path, query or body.", "Error"),
        "404": json_response("No client registered with this endpoint name.", "Error"),
        "405": json_response("Method not allowed on this kind of path.", "Error"),
        "410": json_response("The client deregistered before answering.", "Error"),
        "502": json_response("The device's answer could not be decoded or the exchange failed.", "Error"),
        "503": json_response("Server stopped or request queue full.", "Error"),
        "504": json_response("No answer within the timeout.", "Error"),
    })
}

fn dm_op(summary: &str, extra: Vec<Value>, body: Option<Value>) -> Value {
    let mut params = vec![ep(), path(), timeout()];
    params.extend(extra);
    let mut op = json!({"summary": summary, "parameters": params, "responses": dm_responses()});
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

/// A composite operation: no `{path}`, a `paths` list instead (except
/// Write-Composite, whose body names its paths).
fn composite_op(summary: &str, with_paths: bool, body: Option<Value>) -> Value {
    let mut params = vec![ep(), timeout(), param(
        "format",
        "query",
        false,
        "Format of the path list, the values and the answer: SENML_CBOR (default), SENML_JSON or LWM2M_CBOR.",
    )];
    if with_paths {
        params.push(param(
            "paths",
            "query",
            true,
            "Comma-separated LwM2M paths: /3/0/9,/1/0/1.",
        ));
    }
    let mut op = json!({"summary": summary, "parameters": params, "responses": dm_responses()});
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    op
}

fn node_body() -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}})
}

/// The document.
pub fn openapi() -> Value {
    let mut doc = base_document();
    for (paths, schemas) in [firmware_document(), alerts_document()] {
        for (target, extra) in [
            ("paths", paths),
            ("components", json!({"schemas": schemas})),
        ] {
            merge(&mut doc[target], extra);
        }
    }
    doc
}

/// The alert routes: rules, alerts, acknowledgement (paths, schemas).
fn alerts_document() -> (Value, Value) {
    let id = |what: &str| param("id", "path", true, what);
    let paths = json!({
        "/api/alerts/rules": {
            "get": {
                "summary": "Every alert rule.",
                "responses": {"200": {"description": "The rules.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AlertRule"}}}}}},
            },
            "post": {
                "summary": "Create an alert rule: {\"kind\":\"threshold\",\"path\":\"/3/0/9\",\"op\":\"<\",\"value\":20} or {\"kind\":\"offline\"} or {\"kind\":\"firmware_failed\"}; optional name, endpoint_prefix.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlertRule"}}}},
                "responses": {
                    "201": json_response("The rule with its id.", "AlertRule"),
                    "400": json_response("Not a valid rule.", "Error"),
                    "409": json_response("Too many rules.", "Error"),
                },
            },
        },
        "/api/alerts/rules/{id}": {
            "get": {
                "summary": "One alert rule.",
                "parameters": [id("Rule id.")],
                "responses": {"200": json_response("The rule.", "AlertRule"), "404": json_response("No such rule.", "Error")},
            },
            "delete": {
                "summary": "Delete an alert rule (its active alerts are cleared).",
                "parameters": [id("Rule id.")],
                "responses": {"204": {"description": "Deleted."}, "404": json_response("No such rule.", "Error")},
            },
        },
        "/api/alerts": {
            "get": {
                "summary": "Active alerts, newest first; with all=true also the last 1000 cleared ones.",
                "parameters": [param("all", "query", false, "true: include cleared alerts.")],
                "responses": {"200": {"description": "The alerts.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}}}}},
            },
        },
        "/api/alerts/{id}/ack": {
            "post": {
                "summary": "Acknowledge an active alert (an ALERT event with change acked).",
                "parameters": [id("Alert id.")],
                "responses": {"200": json_response("The alert.", "Alert"), "404": json_response("No such active alert.", "Error")},
            },
        },
    });
    let schemas = json!({
        "AlertRule": {"type": "object", "required": ["kind"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["threshold", "offline", "firmware_failed"]},
            "path": {"type": "string"}, "op": {"type": "string", "enum": ["<", "<=", ">", ">="]},
            "value": {"type": "number"}, "endpoint_prefix": {"type": "string"},
            "webhook": {"type": "string", "description": "http://host:port/path: each raised/cleared alert is POSTed there as JSON (5 s timeout)."},
        }},
        "Alert": {"type": "object", "properties": {
            "id": {"type": "string"}, "rule": {"type": "string"}, "kind": {"type": "string"},
            "endpoint": {"type": "string"}, "value": {"type": "number"},
            "state": {"type": "string", "enum": ["active", "cleared"]}, "acked": {"type": "boolean"},
            "raised_at": {"type": "integer"}, "cleared_at": {"type": "integer"},
        }},
    });
    (paths, schemas)
}

/// Adds the members of `extra` to `into`, recursively for objects.
fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn package_id() -> Value {
    param("id", "path", true, "Firmware package id.")
}

fn campaign_control(summary: &str) -> Value {
    json!({"post": {
        "summary": summary,
        "parameters": [param("id", "path", true, "Campaign id.")],
        "responses": {
            "200": json_response("The campaign after the change.", "Campaign"),
            "404": json_response("No such campaign.", "Error"),
            "409": json_response("Its status does not allow it (e.g. resume of a halted campaign).", "Error"),
            "503": json_response("No firmware store is configured.", "Error"),
        },
    }})
}

/// The firmware routes: packages, downloads, jobs, campaigns (paths, schemas).
fn firmware_document() -> (Value, Value) {
    let no_store = json_response("No firmware store is configured.", "Error");
    let paths = json!({
        "/api/firmware": {
            "get": {
                "summary": "Every firmware package, oldest first.",
                "responses": {
                    "200": {"description": "The packages.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/FirmwarePackage"}}}}},
                    "503": no_store,
                },
            },
            "post": {
                "summary": "Upload a firmware package: the raw image as body.",
                "parameters": [
                    param("name", "query", true, "Package name."),
                    param("version", "query", true, "Package version."),
                ],
                "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {
                    "201": json_response("Stored; its id, size and SHA-256.", "FirmwarePackage"),
                    "400": json_response("No name or version, or an empty body.", "Error"),
                    "413": {"description": "The body is larger than the server's firmware size limit."},
                    "503": no_store,
                },
            },
        },
        "/api/firmware/{id}": {
            "get": {
                "summary": "One firmware package's metadata.",
                "parameters": [package_id()],
                "responses": {
                    "200": json_response("The package.", "FirmwarePackage"),
                    "404": json_response("No such package.", "Error"),
                    "503": no_store,
                },
            },
            "delete": {
                "summary": "Remove a firmware package.",
                "parameters": [package_id()],
                "responses": {
                    "204": {"description": "Removed."},
                    "404": json_response("No such package.", "Error"),
                    "503": no_store,
                },
            },
        },
        "/fw/{id}": {
            "get": {
                "summary": "Download a firmware package over HTTP (devices pulling an http:// Package URI); one Range: bytes= range is honoured.",
                "parameters": [package_id(), {"name": "Range", "in": "header", "required": false, "schema": {"type": "string", "example": "bytes=1024-"}}],
                "responses": {
                    "200": {"description": "The whole package.", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "206": {"description": "The range asked for, with Content-Range."},
                    "404": json_response("No such package.", "Error"),
                    "416": {"description": "The range starts past the end (Content-Range: bytes */SIZE)."},
                },
            },
        },
        "/api/clients/{endpoint}/firmware": {
            "post": {
                "summary": "Start a firmware update of one device: push (write Package), coap or http (write Package URI, the device pulls /fw/{id}); then Execute Update and wait for Update Result 1. Its status changes come as FIRMWARE events.",
                "parameters": [ep()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FirmwareUpdateRequest"}}}},
                "responses": {
                    "202": json_response("Started.", "FirmwareJob"),
                    "400": json_response("The body did not parse or names an unknown delivery.", "Error"),
                    "404": json_response("No such client or package.", "Error"),
                    "409": json_response("An update of this device is already running.", "Error"),
                    "503": no_store,
                },
            },
        },
        "/api/campaigns": {
            "get": {
                "summary": "Every firmware update campaign (without device lists), oldest first.",
                "responses": {
                    "200": {"description": "The campaigns.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Campaign"}}}}},
                    "503": no_store,
                },
            },
            "post": {
                "summary": "Start a campaign: the targets in waves (a wave starts when the previous one finished), at most max_concurrent devices at once; halted when failures exceed failure_threshold.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CampaignRequest"}}}},
                "responses": {
                    "201": json_response("Created (running, or paused if asked).", "Campaign"),
                    "400": json_response("The body did not parse, an unknown package, no or duplicate targets, a bad wave.", "Error"),
                    "503": no_store,
                },
            },
        },
        "/api/campaigns/{id}": {
            "get": {
                "summary": "One campaign with the status of each device.",
                "parameters": [param("id", "path", true, "Campaign id.")],
                "responses": {
                    "200": json_response("The campaign.", "Campaign"),
                    "404": json_response("No such campaign.", "Error"),
                    "503": no_store,
                },
            },
        },
        "/api/campaigns/{id}/pause": campaign_control("Pause a running campaign: no device starts until resumed (those in flight finish)."),
        "/api/campaigns/{id}/resume": campaign_control("Resume a paused campaign."),
        "/api/campaigns/{id}/cancel": campaign_control("Cancel a running or paused campaign (devices in flight finish, the others stay pending)."),
        "/api/jobs": {
            "get": {
                "summary": "Firmware update jobs, oldest first (the last 1000 finished ones and every running one).",
                "responses": {"200": {"description": "The jobs.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/FirmwareJob"}}}}}},
            },
        },
        "/api/jobs/{id}": {
            "get": {
                "summary": "One firmware update job.",
                "parameters": [param("id", "path", true, "Job id (j1, j2, ...).")],
                "responses": {
                    "200": json_response("The job.", "FirmwareJob"),
                    "404": json_response("No such job.", "Error"),
                },
            },
        },
    });
    let schemas = json!({
        "CampaignRequest": {"type": "object", "properties": {
            "name": {"type": "string"},
            "package": {"type": "string"},
            "delivery": {"type": "string", "enum": ["push", "coap", "http"]},
            "targets": {"type": "array", "items": {"type": "string"}, "description": "Endpoint names, distinct."},
            "waves": {"type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "string", "example": "25%"}]}, "description": "Wave sizes in order; targets left over form a last wave. Default: one wave."},
            "max_concurrent": {"type": "integer", "description": "Default 10."},
            "failure_threshold": {"type": "integer", "description": "Failures allowed; one more halts the campaign. Default 0."},
            "timeout": {"type": "integer", "description": "Seconds per step of one device (default 600)."},
            "paused": {"type": "boolean", "description": "Create it paused."},
        }, "required": ["name", "package", "delivery", "targets"]},
        "Campaign": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "package": {"type": "string"},
            "delivery": {"type": "string", "enum": ["push", "coap", "http"]},
            "waves": {"type": "array", "items": {"type": "integer"}},
            "max_concurrent": {"type": "integer"}, "failure_threshold": {"type": "integer"}, "timeout": {"type": "integer"},
            "status": {"type": "string", "enum": ["running", "paused", "halted", "cancelled", "completed"]},
            "reason": {"type": "string", "description": "Why it halted."},
            "counts": {"type": "object", "description": "Devices per status."},
            "in_flight": {"type": "integer"},
            "created": {"type": "integer"}, "updated": {"type": "integer"},
            "devices": {"type": "array", "items": {"type": "object", "properties": {
                "endpoint": {"type": "string"}, "wave": {"type": "integer"},
                "status": {"type": "string", "enum": ["pending", "delivering", "downloaded", "updating", "succeeded", "failed"]},
                "reason": {"type": "string"},
            }}},
        }},
        "FirmwareUpdateRequest": {"type": "object", "properties": {
            "package": {"type": "string", "description": "Firmware package id."},
            "delivery": {"type": "string", "enum": ["push", "coap", "http"]},
            "timeout": {"type": "integer", "description": "Seconds allowed for the download and again for the update (default 600)."},
        }, "required": ["package", "delivery"]},
        "FirmwareJob": {"type": "object", "properties": {
            "id": {"type": "string"}, "endpoint": {"type": "string"}, "package": {"type": "string"},
            "delivery": {"type": "string", "enum": ["push", "coap", "http"]},
            "status": {"type": "string", "enum": ["pending", "delivering", "downloaded", "updating", "succeeded", "failed"]},
            "reason": {"type": "string", "description": "Why it failed (an Update Result and its meaning, a refused request, a timeout)."},
            "created": {"type": "integer"}, "updated": {"type": "integer"},
        }, "required": ["id", "endpoint", "package", "delivery", "status"]},
        "FirmwarePackage": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "version": {"type": "string"},
            "size": {"type": "integer"},
            "sha256": {"type": "string", "description": "64 lowercase hex digits."},
            "created": {"type": "integer", "description": "Milliseconds since the Unix epoch."},
        }, "required": ["id", "name", "version", "size", "sha256", "created"]},
    });
    (paths, schemas)
}

/// The device-management, bootstrap and security part of the document.
fn base_document() -> Value {
    let attrs_params = vec![
        param(
            "pmin",
            "query",
            false,
            "Minimum period (s); a bare name unsets it.",
        ),
        param("pmax", "query", false, "Maximum period (s)."),
        param("gt", "query", false, "Greater than."),
        param("lt", "query", false, "Less than."),
        param("st", "query", false, "Step."),
        param(
            "epmin",
            "query",
            false,
            "Minimum evaluation period (s, 1.1).",
        ),
        param(
            "epmax",
            "query",
            false,
            "Maximum evaluation period (s, 1.1).",
        ),
        param("edge", "query", false, "Edge 0/1 (1.2)."),
        param(
            "con",
            "query",
            false,
            "Confirmable notifications 0/1 (1.2).",
        ),
        param("hqmax", "query", false, "Historical queue maximum (1.2)."),
    ];
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "LwM2M server admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Registrations, device management and events of the LwM2M server, shaped like Eclipse Leshan's demo server API.",
        },
        "paths": {
            "/": {"get": {"summary": "Web UI.", "responses": {"200": {"description": "HTML page.", "content": {"text/html": {}}}}}},
            "/app.js": {"get": {"summary": "Web UI script.", "responses": {"200": {"description": "JavaScript.", "content": {"text/javascript": {}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text exposition format 0.0.4).", "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {}}}}}},
            "/api/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "OpenAPI 3 document.", "content": {"application/json": {}}}}}},
            "/api/objectspecs": {"get": {"summary": "Object models the server knows (default version of each object).", "responses": {"200": {"description": "Object models.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/ObjectSpec"}}}}}}}},
            "/api/events": {"get": {
                "summary": "Server-Sent Events: REGISTRATION, UPDATED, DEREGISTRATION (data: Registration, plus expired), NOTIFICATION (data: {ep, res, val: Node or values, status, code}), SEND for values a client sent unasked (data: {ep, contentFormat, values: [{path, value, time?}]}), REQUEST_RESULT for every device-management request, queued or not (data: {requestId, ep, path, operation, result: DeviceResponse or Error}), AWAKE and SLEEPING for queue-mode clients (data: {ep}).",
                "parameters": [param("ep", "query", false, "Only events of this endpoint.")],
                "responses": {"200": {"description": "Event stream.", "content": {"text/event-stream": {}}}},
            }},
            "/api/clients": {"get": {"summary": "Registered clients.", "responses": {"200": {"description": "Registrations.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Registration"}}}}}}}},
            "/api/clients/{endpoint}": {"get": {
                "summary": "One registered client.",
                "parameters": [ep()],
                "responses": {"200": json_response("Registration.", "Registration"), "404": json_response("Unknown client.", "Error")},
            }},
            "/api/clients/{endpoint}/{path}": {
                "get": dm_op("Read.", vec![format()], None),
                "put": dm_op("Write a node (replace=true: PUT replace; false: POST partial update).",
                    vec![format(), param("replace", "query", false, "true (default) or false.")], Some(node_body())),
                "post": dm_op("Execute on a resource path (body: arguments as text, e.g. 0='a',1) or Create on an object path (body: an instance node with its id).",
                    vec![format()], Some(json!({"required": false, "content": {
                        "text/plain": {"schema": {"type": "string"}},
                        "application/json": {"schema": {"$ref": "#/components/schemas/Node"}},
                    }}))),
                "delete": dm_op("Delete an object instance.", vec![], None),
            },
            "/api/clients/{endpoint}/{path}/discover": {"get": dm_op("Discover: objectLinks with attributes.", vec![], None)},
            "/api/clients/{endpoint}/{path}/attributes": {"put": dm_op("Write-Attributes.", attrs_params, None)},
            "/api/clients/{endpoint}/{path}/observe": {
                "post": dm_op("Observe; notifications come as NOTIFICATION events.", vec![format()], None),
                "delete": dm_op("Cancel the observation of this path (actively).", vec![], None),
            },
            "/api/clients/{endpoint}/composite": {
                "get": composite_op("Read-Composite (FETCH /): values in the answer's \"values\".", true, None),
                "put": composite_op("Write-Composite (iPATCH /).", false, Some(json!({"required": true, "content": {"application/json": {"schema": {
                    "type": "object",
                    "description": "Path → value; values are typed by the object models, or {\"type\": ..., \"value\": ...} for resources the models do not know.",
                    "additionalProperties": {},
                    "example": {"/1/0/1": 300, "/3/0/14": "+02:00"},
                }}}}))),
                "post": composite_op("Observe-Composite; notifications come as NOTIFICATION events (res: the paths, comma-separated; val: the values).", true, None),
                "delete": composite_op("Cancel the Observe-Composite of exactly these paths (actively).", true, None),
            },
            "/api/bootstrap": {"get": {
                "summary": "Every bootstrap configuration, in the shape of bootstrap.json.",
                "responses": {
                    "200": json_response("Configurations by endpoint name.", "BootstrapFile"),
                    "503": json_response("No bootstrap server runs, or its store failed.", "Error"),
                },
            }},
            "/api/bootstrap/{endpoint}": {
                "get": {
                    "summary": "The bootstrap configuration of one endpoint.",
                    "parameters": [ep()],
                    "responses": {
                        "200": json_response("The configuration.", "BootstrapConfig"),
                        "404": json_response("No configuration for this endpoint.", "Error"),
                        "503": json_response("No bootstrap server runs, or its store failed.", "Error"),
                    },
                },
                "put": {
                    "summary": "Add or replace the bootstrap configuration of one endpoint (validated); answers it with defaults filled in.",
                    "parameters": [ep()],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BootstrapConfig"}}}},
                    "responses": {
                        "200": json_response("The stored configuration.", "BootstrapConfig"),
                        "400": json_response("The JSON did not parse or the configuration is invalid.", "Error"),
                        "409": json_response("The bootstrap-server account's PSK identity is used by another endpoint.", "Error"),
                        "503": json_response("No bootstrap server runs, or its store failed.", "Error"),
                    },
                },
                "delete": {
                    "summary": "Remove the bootstrap configuration of one endpoint.",
                    "parameters": [ep()],
                    "responses": {
                        "204": {"description": "Removed."},
                        "404": json_response("No configuration for this endpoint.", "Error"),
                        "503": json_response("No bootstrap server runs, or its store failed.", "Error"),
                    },
                },
            },
            "/api/security/clients": {"get": {
                "summary": "Every client's security credentials (PSK keys are never returned).",
                "responses": {
                    "200": {"description": "Credentials, sorted by endpoint.", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/SecurityInfo"}}}}},
                    "503": json_response("No security store is configured, or it failed.", "Error"),
                },
            }},
            "/api/security/clients/{endpoint}": {
                "get": {
                    "summary": "The security credentials of one endpoint (without a PSK key).",
                    "parameters": [ep()],
                    "responses": {
                        "200": json_response("The credentials.", "SecurityInfo"),
                        "404": json_response("No credentials for this endpoint.", "Error"),
                        "503": json_response("No security store is configured, or it failed.", "Error"),
                    },
                },
                "put": {
                    "summary": "Add or replace the credentials of one endpoint: exactly one of psk (identity and hex key), rpk (hex DER SubjectPublicKeyInfo) or x509 (true: certificate whose CN is the endpoint name).",
                    "parameters": [ep()],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SecurityInfo"}}}},
                    "responses": {
                        "200": json_response("The stored credentials (without a PSK key).", "SecurityInfo"),
                        "400": json_response("The JSON did not parse, a key is not hex, or a field is empty.", "Error"),
                        "409": json_response("The PSK identity is used by another endpoint.", "Error"),
                        "503": json_response("No security store is configured, or it failed.", "Error"),
                    },
                },
                "delete": {
                    "summary": "Remove the credentials of one endpoint.",
                    "parameters": [ep()],
                    "responses": {
                        "204": {"description": "Removed."},
                        "404": json_response("No credentials for this endpoint.", "Error"),
                        "503": json_response("No security store is configured, or it failed.", "Error"),
                    },
                },
            },
        },
        "components": {"schemas": {
            "SecurityInfo": {
                "type": "object",
                "description": "Exactly one of psk, rpk, x509. Answers carry no psk.key.",
                "properties": {
                    "endpoint": {"type": "string"},
                    "psk": {"type": "object", "properties": {"identity": {"type": "string"}, "key": {"type": "string", "description": "Hex; write-only."}}},
                    "rpk": {"type": "object", "properties": {"key": {"type": "string", "description": "Hex DER SubjectPublicKeyInfo."}}},
                    "x509": {"type": "boolean", "enum": [true]},
                },
                "example": {"endpoint": "dev1", "psk": {"identity": "dev1-id", "key": "00112233"}},
            },
            "BootstrapFile": {"type": "object", "required": ["endpoints"], "properties": {
                "endpoints": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/BootstrapConfig"}},
            }},
            "BootstrapConfig": {
                "type": "object",
                "description": "One entry of bootstrap.json (see the README); unknown fields are refused.",
                "properties": {
                    "discover": {"type": "boolean", "description": "Bootstrap-Discover / first (1.1)."},
                    "read": {"type": "array", "items": {"type": "string"}, "description": "Paths to Bootstrap-Read (under /1 and /2 only)."},
                    "delete": {"type": "array", "items": {"type": "string"}, "description": "Paths to Bootstrap-Delete first (default [\"/0\", \"/1\"])."},
                    "security": {"type": "array", "items": {"type": "object"}, "description": "Security (object 0) instances."},
                    "servers": {"type": "array", "items": {"type": "object"}, "description": "Server (object 1) instances."},
                    "acls": {"type": "array", "items": {"type": "object"}, "description": "Access Control (object 2) instances."},
                    "content_format": {"type": "integer", "description": "Content format of the writes (e.g. 11542 for TLV)."},
                },
            },
            "Error": {"type": "object", "properties": {
                "error": {"type": "string"}, "status": {"type": "string"}, "code": {"type": "string"},
                "requestId": {"type": "string", "description": "Set for device-management requests: a late result comes as a REQUEST_RESULT event with this id."},
            }, "required": ["error"]},
            "Queued": {"type": "object", "properties": {"requestId": {"type": "string"}, "status": {"type": "string", "enum": ["QUEUED"]}}},
            "DeviceResponse": {"type": "object", "properties": {
                "requestId": {"type": "string", "description": "Also in the REQUEST_RESULT event of this request."},
                "status": {"type": "string", "example": "CONTENT"},
                "code": {"type": "string", "example": "2.05"},
                "success": {"type": "boolean"},
                "content": {"$ref": "#/components/schemas/Node"},
                "values": {"type": "array", "description": "Composite answers: [{path, value, time?}] in the device's order.", "items": {"$ref": "#/components/schemas/TimestampedValue"}},
                "objectLinks": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}},
                "location": {"type": "string", "description": "Path of the instance a Create made."},
                "errorMessage": {"type": "string", "description": "The device's diagnostic payload."},
                "raw": {"type": "object", "properties": {"contentFormat": {"type": "integer"}, "payload": {"type": "string", "description": "hex"}}},
            }, "required": ["status", "code", "success"]},
            "Node": {
                "type": "object",
                "description": "kind obj: {id, instances}; instance: {id, resources}; singleResource: {id, type, value}; multiResource: {id, type, values: {riid: value}}; resourceInstance: {id, type, value}. Types: STRING, INTEGER, UNSIGNED_INTEGER, FLOAT, BOOLEAN, OPAQUE (hex), TIME (Unix seconds), OBJLNK (\"3:0\"), CORELINK. In request bodies, type may be left out for resources the object models know.",
                "properties": {
                    "kind": {"type": "string", "enum": ["obj", "instance", "singleResource", "multiResource", "resourceInstance"]},
                    "id": {"type": "integer"},
                    "type": {"type": "string"},
                    "value": {},
                    "values": {"type": "object"},
                    "resources": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                    "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                },
                "example": {"kind": "instance", "id": 0, "resources": [{"kind": "singleResource", "id": 0, "type": "STRING", "value": "Open Mobile Alliance"}]},
            },
            "TimestampedValue": {"type": "object", "properties": {
                "path": {"type": "string", "example": "/3/0/9"}, "value": {},
                "time": {"type": "number", "description": "Unix seconds, if the device gave a time."},
            }, "required": ["path", "value"]},
            "Link": {"type": "object", "properties": {"url": {"type": "string"}, "attributes": {"type": "object"}}},
            "Registration": {"type": "object", "properties": {
                "endpoint": {"type": "string"}, "registrationId": {"type": "string"},
                "address": {"type": "string"}, "lifetime": {"type": "integer"},
                "lwM2mVersion": {"type": "string"}, "bindingMode": {"type": "string"},
                "sms": {"type": "string", "nullable": true}, "queueMode": {"type": "boolean"},
                "sleeping": {"type": "boolean"}, "rootPath": {"type": "string"},
                "supportedContentFormats": {"type": "array", "items": {"type": "integer"}},
                "objectLinks": {"type": "array", "items": {"$ref": "#/components/schemas/Link"}},
                "registrationDate": {"type": "string", "format": "date-time"},
                "lastUpdate": {"type": "string", "format": "date-time"},
                "security": {"type": "string", "enum": ["none", "psk", "x509", "rpk"], "description": "How the client authenticated when it registered (none: plain CoAP)."},
                "identity": {"type": "string", "nullable": true, "description": "The PSK identity or the certificate's Common Name; never a key."},
            }},
            "ObjectSpec": {"type": "object", "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"}, "version": {"type": "string"},
                "instancetype": {"type": "string", "enum": ["single", "multiple"]},
                "mandatory": {"type": "boolean"}, "lwm2mversion": {"type": "string"},
                "resourcedefs": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "name": {"type": "string"},
                    "operations": {"type": "string", "enum": ["NONE", "R", "W", "RW", "E"]},
                    "instancetype": {"type": "string", "enum": ["single", "multiple"]},
                    "mandatory": {"type": "boolean"},
                    "type": {"type": "string", "description": "Lower case, as Leshan: string, integer, unsigned_integer, float, boolean, opaque, time, objlnk, corelink, none."},
                    "range": {"type": "string"}, "units": {"type": "string"},
                }}},
            }},
        }},
    })
}
