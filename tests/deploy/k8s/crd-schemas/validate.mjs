// Validates every custom resource in the given multi-document YAML files against the schema
// generated from its CRD (npm @kubernetes-models/*, pinned in package-lock.json).
// Usage: node validate.mjs FILE...   Exit 1 when any object fails or has no known schema.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import * as esV1 from "@kubernetes-models/external-secrets/external-secrets.io/v1";

// apiVersion -> { kind -> model class }. A custom resource of any other group fails: add its
// schema here rather than letting it through unchecked.
const MODELS = {
  "external-secrets.io/v1": esV1,
};

let failed = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc) continue;
    const id = `${doc.kind}/${doc.metadata?.name ?? "?"} (${doc.apiVersion}) in ${file}`;
    const Model = MODELS[doc.apiVersion]?.[doc.kind];
    if (!Model) {
      console.log(`ERROR ${id}: no pinned schema for this custom resource`);
      failed++;
      continue;
    }
    try {
      new Model(doc).validate();
      checked++;
      console.log(`ok    ${id}`);
    } catch (error) {
      failed++;
      console.log(`ERROR ${id}: ${error.message}`);
    }
  }
}
console.log(`custom resources: ${checked} valid, ${failed} failed`);
process.exit(failed ? 1 : 0);
