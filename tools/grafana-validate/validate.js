#!/usr/bin/env node
// Type-checks Grafana dashboards against @grafana/schema with the TypeScript compiler: each
// dashboard becomes `export const dashboard = (<json>) satisfies Json<Dashboard>`, and each of
// its panels `(<panel json>) satisfies PanelOf<"<its type>">` (panels.ts: the plugin's options and field
// config, Prometheus queries, data links), then `tsc --noEmit --strict` must accept them.
//
//   node validate.js FILE...                    every file must type-check
//   node validate.js --expect-invalid FILE...   every file must be rejected, with an error
//                                               containing the text after "expect: " in its
//                                               description (the check's own negative tests:
//                                               a validator that accepts anything, or rejects
//                                               them for another reason, fails them)
//
// Run with NODE_PATH pointing at the node_modules of package-lock.json's packages, as
// scripts/check-monitoring.sh does. Exits 1 on a failed expectation, 2 on a usage error.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const args = process.argv.slice(2);
const expectInvalid = args[0] === '--expect-invalid';
const files = expectInvalid ? args.slice(1) : args;
if (files.length === 0) {
  console.error('usage: validate.js [--expect-invalid] DASHBOARD.json...');
  process.exit(2);
}

const modules = (process.env.NODE_PATH || '').split(path.delimiter).find((dir) =>
  fs.existsSync(path.join(dir, 'typescript', 'bin', 'tsc')));
if (!modules) {
  console.error('validate.js: NODE_PATH must name the node_modules holding typescript and @grafana/schema');
  process.exit(2);
}

// The compiler resolves @grafana/schema from the generated files' directory upwards, so they
// live in a directory beside that node_modules.
const work = fs.mkdtempSync(path.join(path.dirname(modules), 'check-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));
fs.copyFileSync(path.join(__dirname, 'panels.ts'), path.join(work, 'panels.ts'));

function panelsOf(dashboard) {
  const panels = [];
  for (const panel of dashboard.panels || []) {
    if (panel.type === 'row') {
      // A row's own keys are checked with the dashboard; a collapsed row holds its panels.
      panels.push(...(panel.panels || []));
    } else {
      panels.push(panel);
    }
  }
  return panels;
}

const generated = new Map(); // generated .ts file -> dashboard file
const problems = new Map(files.map((file) => [file, []]));
files.forEach((file, index) => {
  let dashboard;
  try {
    dashboard = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    problems.get(file).push(`not JSON: ${error.message}`);
    return;
  }
  const lines = [
    `// ${file}`,
    "import type { DashboardJson, PanelOf } from './panels';",
    `export const dashboard = (${JSON.stringify(dashboard, null, 2)}) satisfies DashboardJson;`,
  ];
  panelsOf(dashboard).forEach((panel, n) => {
    lines.push(`// panel ${panel.id}: ${JSON.stringify(panel.title || '')}`);
    lines.push(`export const panel${n} = (${JSON.stringify(panel, null, 2)}) satisfies PanelOf<${JSON.stringify(String(panel.type))}>;`);
  });
  const name = `dashboard${index}.ts`;
  fs.writeFileSync(path.join(work, name), lines.join('\n') + '\n');
  generated.set(name, file);
});

fs.writeFileSync(path.join(work, 'tsconfig.json'), JSON.stringify({
  compilerOptions: {
    strict: true,
    noEmit: true,
    target: 'es2022',
    module: 'esnext',
    moduleResolution: 'bundler',
    skipLibCheck: true,
    types: [],
  },
  include: ['*.ts'],
}));
const tsc = spawnSync(process.execPath, [path.join(modules, 'typescript', 'bin', 'tsc'), '-p', work, '--pretty', 'false'],
  { encoding: 'utf8', cwd: work });
const output = `${tsc.stdout}${tsc.stderr}`;

// "dashboard0.ts(12,5): error TS2322: ..." with continuation lines indented below it.
let current = null;
for (const line of output.split('\n')) {
  const match = /^(dashboard\d+\.ts)\((\d+),(\d+)\): (error .*)$/.exec(line);
  if (match) {
    const source = fs.readFileSync(path.join(work, match[1]), 'utf8').split('\n');
    // The nearest "// panel" comment above names the panel; else it is the dashboard itself.
    let where = 'dashboard';
    for (let i = Number(match[2]) - 1; i >= 0; i--) {
      if (source[i].startsWith('// panel ')) { where = source[i].slice(3); break; }
    }
    current = [];
    problems.get(generated.get(match[1])).push(current);
    current.push(`${where}, at \`${source[Number(match[2]) - 1].trim()}\`: ${match[4]}`);
  } else if (current && line.startsWith(' ')) {
    current.push(line);
  } else if (line.trim()) {
    // An error outside the dashboards (panels.ts, the schema package) breaks the check itself.
    console.error(`validate.js: the compiler failed: ${line}`);
    process.exit(2);
  }
}
if (tsc.status !== 0 && [...problems.values()].every((list) => list.length === 0)) {
  console.error(`validate.js: tsc exited ${tsc.status} without a diagnostic:\n${output}`);
  process.exit(2);
}

let failed = false;
for (const [file, list] of problems) {
  if (expectInvalid) {
    const text = list.map((problem) => [].concat(problem).join('\n')).join('\n');
    let expected = '';
    try {
      expected = (/^expect: (.+)$/.exec(JSON.parse(fs.readFileSync(file, 'utf8')).description || '') || [])[1] || '';
    } catch (error) {
      // Not JSON: rejected above, and there is no description to match.
    }
    if (list.length === 0) {
      failed = true;
      console.log(`BAD ${file}: accepted, but it is invalid`);
    } else if (!expected || !text.includes(expected)) {
      failed = true;
      console.log(`BAD ${file}: rejected, but not with ${JSON.stringify(expected)} (its description "expect: ..."):\n    ${text}`);
    } else {
      console.log(`ok  ${file}: rejected: ${expected}`);
    }
  } else if (list.length > 0) {
    failed = true;
    console.log(`BAD ${file}:`);
    for (const problem of list) console.log(`    ${[].concat(problem).join('\n    ')}`);
  } else {
    const count = panelsOf(JSON.parse(fs.readFileSync(file, 'utf8'))).length;
    console.log(`ok  ${file}: ${count} panels`);
  }
}
process.exit(failed ? 1 : 0);
