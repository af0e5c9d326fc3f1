#!/usr/bin/env node
// Validates Istio resources: each YAML file given (multi-document; `-` reads stdin) is checked
// on its own, as one set of resources that must be consistent with itself.
//
//   node validate.js FILE...        exit 0 when every document passes, 1 otherwise
//
// 1. Schema: `new Model(doc).validate()` from @kubernetes-models/istio 2.3.0 (Istio 1.18 CRD
//    schemas). Only the API versions the project uses are accepted.
// 2. Unknown fields: those schemas accept any extra key (a misspelt `retries.atempts` would pass
//    and be ignored by Istio), so every key is also checked against the schema's properties.
// 3. Rules the schemas cannot express (istio/README.md): every HTTP route sets `retries.attempts:
//    0` and an explicit timeout that is 0s (disabled) or at least the caller's deadline for that
//    hop; weights sum to 100; every subset a route names exists in that host's DestinationRule;
//    every DestinationRule has the `stable` and `canary` subsets; durations are in seconds;
//    names are unique; the namespace-wide PeerAuthentication is STRICT; principals are SPIFFE
//    service-account names; an HTTPS server names its credential.
"use strict";

const fs = require("fs");
const yaml = require("js-yaml");
const validateLib = require("@kubernetes-models/validate");

// Capture every schema the models register, for the unknown-field check (the models keep them
// private). The models call `register` through the module's exports at validation time.
const schemas = new Map();
const originalRegister = validateLib.register;
validateLib.register = (id, schema) => {
  schemas.set(id, schema);
  return originalRegister(id, schema);
};

const networking = require("@kubernetes-models/istio/networking.istio.io/v1beta1");
const security = require("@kubernetes-models/istio/security.istio.io/v1beta1");
const telemetry = require("@kubernetes-models/istio/telemetry.istio.io/v1alpha1");

const MODELS = {
  "networking.istio.io/v1beta1": networking,
  "security.istio.io/v1beta1": security,
  "telemetry.istio.io/v1alpha1": telemetry,
};

// The services and their ports (the k8s Services name them http and grpc).
const SERVICES = {
  "api-gateway": { http: 8080 },
  "user-service": { http: 8081, grpc: 9081 },
  "product-service": { http: 8082, grpc: 9082 },
  "order-service": { http: 8083, grpc: 9083 },
  "payment-service": { http: 8084, grpc: 9084 },
  "notification-service": { http: 8085 },
  "event-store": { http: 8086 },
};

// The caller's own deadline for each hop, in seconds. A mesh timeout must be 0s (disabled) or
// at least this, so the caller's deadline always fires first (istio/README.md).
const DEADLINES = {
  gateway: 35, // ingress -> api-gateway: the gateway answers by its REQUEST_TIMEOUT (35s)
  http: 30, // api-gateway -> a service's HTTP port: UPSTREAM_TIMEOUT (30s) per attempt
  // order-service -> gRPC: ORDER_CALL_TIMEOUT (5s) per attempt; payment-service -> the order
  // service's gRPC: 3s (the longer one applies to every gRPC hop)
  grpc: 5,
};

// Keys whose values are protobuf Durations. Seconds only ("10s", "0.5s"): every Istio version
// parses that form.
const DURATION_KEYS = new Set([
  "timeout", "perTryTimeout", "connectTimeout", "idleTimeout", "maxConnectionDuration",
  "interval", "baseEjectionTime", "time", "drainDuration",
]);
const DURATION = /^\d+(\.\d{1,9})?s$/;

function shortHost(host) {
  // "user-service", "user-service.microservices", "user-service.microservices.svc.cluster.local"
  return String(host).split(".")[0];
}

function seconds(d) {
  return DURATION.test(d) ? parseFloat(d) : NaN;
}

// ---------------------------------------------------------------------------------------------
// Unknown-field check: walk the document alongside its JSON schema.

function resolve(schema) {
  if (schema && schema.$ref) {
    const id = schema.$ref.replace(/#$/, "");
    return schemas.get(id) || null; // metadata refs: checked by the model's own validation
  }
  return schema;
}

function branches(schema) {
  const out = [schema];
  for (const k of ["oneOf", "anyOf", "allOf"]) {
    for (const b of schema[k] || []) out.push(...branches(resolve(b) || {}));
  }
  return out;
}

function unknownFields(value, schema, path, errors) {
  schema = resolve(schema);
  if (!schema || value === null || typeof value !== "object") return;
  const all = branches(schema);
  if (all.some((s) => s["x-kubernetes-preserve-unknown-fields"])) return;
  if (Array.isArray(value)) {
    const items = all.map((s) => s.items).filter(Boolean);
    if (items.length) value.forEach((v, i) => items.forEach((it) => unknownFields(v, it, `${path}[${i}]`, errors)));
    return;
  }
  const props = {};
  let additional = null;
  let open = false;
  for (const s of all) {
    Object.assign(props, s.properties || {});
    if (s.additionalProperties && typeof s.additionalProperties === "object") additional = s.additionalProperties;
    if (s.additionalProperties === true) open = true;
  }
  const hasProps = Object.keys(props).length > 0;
  for (const [key, v] of Object.entries(value)) {
    const where = path ? `${path}.${key}` : key;
    if (props[key]) unknownFields(v, props[key], where, errors);
    else if (additional) unknownFields(v, additional, where, errors);
    else if (hasProps && !open) errors.push(`unknown field ${where}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks across one file's documents.

function deadlineFor(host, port) {
  const svc = SERVICES[shortHost(host)];
  if (shortHost(host) === "api-gateway") return { hop: "gateway", s: DEADLINES.gateway };
  if (!svc) return null;
  if (port !== undefined && svc.grpc === port) return { hop: "grpc", s: DEADLINES.grpc };
  if (port !== undefined && svc.http === port) return { hop: "http", s: DEADLINES.http };
  // No port: the route may carry either protocol, so the longest deadline applies.
  return svc.grpc ? { hop: "http or grpc", s: Math.max(DEADLINES.http, DEADLINES.grpc) } : { hop: "http", s: DEADLINES.http };
}

function checkDurations(value, path, errors) {
  if (value === null || typeof value !== "object") return;
  for (const [k, v] of Object.entries(value)) {
    const where = path ? `${path}.${k}` : k;
    if (DURATION_KEYS.has(k) && typeof v === "string") {
      if (!DURATION.test(v)) errors.push(`${where}: duration "${v}" must be in seconds, e.g. "10s" or "0.5s"`);
    } else {
      checkDurations(v, where, errors);
    }
  }
}

function semantic(docs, report) {
  const seen = new Set();
  const subsets = new Map(); // short host -> Set(subset)
  const gateways = new Set();
  for (const { doc, label } of docs) {
    const key = `${doc.kind}/${(doc.metadata || {}).namespace || ""}/${(doc.metadata || {}).name}`;
    if (seen.has(key)) report(label, `duplicate ${doc.kind} named ${doc.metadata.name}`);
    seen.add(key);
    if (doc.kind === "DestinationRule") {
      const names = ((doc.spec || {}).subsets || []).map((s) => s.name);
      const host = shortHost((doc.spec || {}).host);
      subsets.set(host, new Set(names));
    }
    if (doc.kind === "Gateway") gateways.add(doc.metadata.name);
  }

  for (const { doc, label } of docs) {
    const spec = doc.spec || {};
    const err = (m) => report(label, m);
    const durErrors = [];
    checkDurations(spec, "spec", durErrors);
    durErrors.forEach(err);

    switch (doc.kind) {
      case "DestinationRule": {
        if (!spec.host) err("spec.host is required");
        else if (!SERVICES[shortHost(spec.host)]) err(`spec.host ${spec.host} is not a service of the platform`);
        const names = (spec.subsets || []).map((s) => s.name);
        for (const want of ["stable", "canary"]) {
          if (!names.includes(want)) err(`subset ${want} is missing (canary releases route to stable and canary)`);
        }
        if (new Set(names).size !== names.length) err("subset names repeat");
        for (const s of spec.subsets || []) {
          if (!s.labels || s.labels.version !== s.name) err(`subset ${s.name} must select pods by label version: ${s.name}`);
        }
        const tp = spec.trafficPolicy || {};
        if (!tp.connectionPool) err("trafficPolicy.connectionPool is required");
        if (!tp.outlierDetection) err("trafficPolicy.outlierDetection is required");
        break;
      }
      case "VirtualService": {
        if (!(spec.hosts || []).length) err("spec.hosts is required");
        for (const g of spec.gateways || []) {
          if (g !== "mesh" && !g.includes("/") && !gateways.has(g)) err(`gateway ${g} is not defined in this set`);
        }
        if ((spec.tcp || []).length || (spec.tls || []).length) err("only http routes are expected (tcp/tls routes bypass the timeout rule)");
        (spec.http || []).forEach((r, i) => {
          const where = `http[${i}]${r.name ? ` (${r.name})` : ""}`;
          if (!r.retries || r.retries.attempts !== 0) {
            err(`${where}: retries.attempts must be 0: the mesh never retries, the calling code does (istio/README.md)`);
          }
          const route = r.route || [];
          if (!route.length) err(`${where}: no route destinations`);
          const weights = route.map((d) => (d.weight === undefined ? (route.length === 1 ? 100 : 0) : d.weight));
          const sum = weights.reduce((a, b) => a + b, 0);
          if (sum !== 100) err(`${where}: weights ${weights.join("/")} sum to ${sum}, not 100`);
          if (weights.some((w) => w < 0 || w > 100)) err(`${where}: weights must be within 0..100`);
          const matchPorts = (r.match || []).map((m) => m.port).filter((p) => p !== undefined);
          const timeoutErrors = new Set(); // one message per route, not per destination
          for (const d of route) {
            const dest = d.destination || {};
            const host = shortHost(dest.host);
            if (dest.subset) {
              const known = subsets.get(host);
              if (!known) err(`${where}: subset ${dest.subset} of ${dest.host}: no DestinationRule for that host in this set`);
              else if (!known.has(dest.subset)) err(`${where}: subset ${dest.subset} is not defined in the DestinationRule of ${dest.host}`);
            }
            if (!SERVICES[host]) { err(`${where}: destination ${dest.host} is not a service of the platform`); continue; }
            const port = dest.port && dest.port.number !== undefined ? dest.port.number : matchPorts[0];
            const svc = SERVICES[host];
            if (port !== undefined && port !== svc.http && port !== svc.grpc) err(`${where}: ${dest.host} has no port ${port}`);
            const deadline = deadlineFor(dest.host, port);
            if (r.timeout === undefined) {
              timeoutErrors.add(`${where}: timeout must be set explicitly (0s to disable, else >= ${deadline.s}s, the caller's ${deadline.hop} deadline)`);
            } else {
              const t = seconds(r.timeout);
              if (!Number.isNaN(t) && t !== 0 && t < deadline.s) {
                timeoutErrors.add(`${where}: timeout ${r.timeout} is shorter than the caller's ${deadline.hop} deadline (${deadline.s}s) for ${dest.host}: the mesh would cut calls the caller still waits for`);
              }
            }
          }
          timeoutErrors.forEach(err);
        });
        break;
      }
      case "PeerAuthentication": {
        if (!spec.selector && (!spec.mtls || spec.mtls.mode !== "STRICT")) {
          err("the namespace-wide PeerAuthentication must be STRICT");
        }
        if (spec.portLevelMtls && !spec.selector) err("portLevelMtls needs a workload selector");
        break;
      }
      case "AuthorizationPolicy": {
        for (const rule of spec.rules || []) {
          for (const f of rule.from || []) {
            for (const p of (f.source || {}).principals || []) {
              if (!/^cluster\.local\/ns\/[a-z0-9-]+\/sa\/[a-z0-9-]+$/.test(p)) err(`principal ${p} is not cluster.local/ns/<namespace>/sa/<service account>`);
            }
          }
          for (const t of rule.to || []) {
            for (const port of (t.operation || {}).ports || []) {
              if (!/^\d+$/.test(port)) err(`port ${port} must be a number in a string`);
            }
          }
        }
        if (spec.action && spec.action !== "DENY" && spec.action !== "ALLOW" && spec.action !== "AUDIT" && spec.action !== "CUSTOM") err(`action ${spec.action}`);
        if (spec.selector === undefined && spec.rules && doc.metadata.name !== "metrics") {
          err("a namespace-wide ALLOW policy with rules opens every workload: give it a selector");
        }
        break;
      }
      case "Gateway": {
        for (const s of spec.servers || []) {
          if (s.port && s.port.protocol === "HTTPS" && !(s.tls && s.tls.credentialName)) err(`HTTPS server ${s.port.name} has no tls.credentialName`);
        }
        break;
      }
      default:
        break;
    }
  }
}

// ---------------------------------------------------------------------------------------------

function main(files) {
  if (!files.length) {
    console.error("usage: validate.js FILE... (YAML, multi-document; - for stdin)");
    return 2;
  }
  let failures = 0;
  let count = 0;
  for (const file of files) {
    const text = file === "-" ? fs.readFileSync(0, "utf8") : fs.readFileSync(file, "utf8");
    let raw;
    try {
      raw = yaml.loadAll(text);
    } catch (e) {
      console.error(`${file}: YAML: ${e.message}`);
      failures++;
      continue;
    }
    const docs = [];
    const report = (label, message) => {
      console.error(`${label}: ${message}`);
      failures++;
    };
    raw.forEach((doc, i) => {
      if (doc === null || doc === undefined) return;
      const label = `${file}: ${doc.kind || "?"}/${(doc.metadata || {}).name || `#${i}`}`;
      const group = MODELS[doc.apiVersion];
      const Model = group && group[doc.kind];
      if (!Model) {
        report(label, `unexpected apiVersion/kind ${doc.apiVersion}/${doc.kind} (expected networking.istio.io/v1beta1, security.istio.io/v1beta1 or telemetry.istio.io/v1alpha1)`);
        return;
      }
      count++;
      try {
        new Model(doc).validate();
      } catch (e) {
        report(label, `schema: ${e.message}`);
      }
      if (!doc.metadata || !doc.metadata.name) report(label, "metadata.name is required");
      const unknown = [];
      const schemaId = `${doc.apiVersion.replace("/", ".")}.${doc.kind}`;
      unknownFields(doc, schemas.get(schemaId), "", unknown);
      unknown.forEach((m) => report(label, m));
      docs.push({ doc, label });
    });
    semantic(docs, report);
  }
  if (failures) {
    console.error(`validate-istio: ${failures} problem(s) in ${count} resource(s)`);
    return 1;
  }
  console.log(`validate-istio: ${count} resource(s) valid (schemas of @kubernetes-models/istio 2.3.0, plus the mesh rules)`);
  return 0;
}

process.exitCode = main(process.argv.slice(2));
