// Load test of the platform through its API gateway (k6 1.1; `scripts/load-test.sh` installs
// k6, starts a private platform and runs this; `tests/load/README.md` has the details).
//
// Five scenarios, each its own `ramping-arrival-rate` executor (open model: the arrival rate
// is fixed whatever the latency, so a slow platform shows up as latency and dropped
// iterations, not as a politely lower request rate):
//   browse    GET  /api/v1/products?page=&per_page=&category=&sort=&in_stock=&min_price=&max_price=
//   search    GET  /api/v1/products/search?q=&page=&per_page=
//   detail    GET  /api/v1/products/{id}
//   login     POST /api/v1/auth/login
//   checkout  POST /api/v1/orders (Idempotency-Key; 201 confirmed or 202 still running)
// Every iteration ends with a think time, as a shopper reading the page.
//
// setup() prepares everything through the API: it reads the catalog (GET /api/v1/products),
// registers one user per virtual user (POST /api/v1/users) and logs each in, so that every
// virtual shopper pays as its own user (the fraud rules' velocity per user and per card is not
// what is measured). With ADMIN_EMAIL/ADMIN_PASSWORD it also tops up the stock of the products
// the checkout buys (PUT /api/v1/admin/products/{id}/inventory), so that the run does not
// measure a sell-out.
//
// Environment (all optional):
//   BASE_URL          the gateway (default http://127.0.0.1:8080)
//   PROFILE           smoke (about 25 s at a low rate, for CI) or load (about 4 minutes)
//   RATE_SCALE        multiplies every scenario's arrival rate (default 1)
//   THINK_SCALE       multiplies every think time (default 1; 0: no think time)
//   READ_P99_MS       p99 limit of the cached reads, browse and detail (default 10)
//   SEARCH_P99_MS     p99 limit of search, which is not cached (default 50)
//   LOGIN_P95_MS      p95 limit of login, an Argon2id hash each (default 500)
//   CHECKOUT_P95_MS   p95 limit of checkout (default 1000)
//   MAX_ERROR_RATE    the largest share of failed requests and failed checks (default 0.001)
//   ADMIN_EMAIL / ADMIN_PASSWORD   an administrator, to top up the checkout's stock
//   SUMMARY_DIR       where handleSummary writes the JSON and HTML summaries (must exist;
//                     default $TMPDIR or /tmp)
//   BUILD             a label for the report (load-test.sh sets release or debug)
//
// The target platform should not rate limit the load generator (RATE_LIMIT_PER_MINUTE=0) and
// should allow many payments per user and card (FRAUD_MAX_PAYMENTS_PER_USER/_PER_CARD), as
// load-test.sh sets them.

import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Gauge, Rate } from 'k6/metrics';

// ---------------------------------------------------------------- configuration

function envNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`${name} must be a number, 0 or more (it is "${raw}")`);
  }
  return value;
}

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const API = `${BASE_URL}/api/v1`;
const PROFILE = (__ENV.PROFILE || 'smoke').toLowerCase();
const BUILD = __ENV.BUILD || 'unknown';
const RATE_SCALE = envNumber('RATE_SCALE', 1);
const THINK_SCALE = envNumber('THINK_SCALE', 1);
const SUMMARY_DIR = (__ENV.SUMMARY_DIR || __ENV.TMPDIR || '/tmp').replace(/\/+$/, '');
const ADMIN_EMAIL = __ENV.ADMIN_EMAIL || '';
const ADMIN_PASSWORD = __ENV.ADMIN_PASSWORD || '';

const LIMITS = {
  // The specification's figure for cached reads through the gateway, on the release build
  // (docs/PERFORMANCE.md measures 2.3 ms p99 for a cached product and 4.6 ms for a cached list
  // page at 20,000-34,000 requests/s). A debug build is several times slower: load-test.sh
  // passes a looser limit when it runs one.
  readP99: envNumber('READ_P99_MS', 10),
  // Search goes to SQLite's FTS5 (PostgreSQL's GIN index) on every request: no cache.
  searchP99: envNumber('SEARCH_P99_MS', 50),
  // One Argon2id verification (19 MiB, 2 passes: tens of milliseconds of one core) plus
  // queueing behind ARGON2_MAX_CONCURRENT = the number of cores.
  loginP95: envNumber('LOGIN_P95_MS', 500),
  // Checkout is the whole saga: price lookup, order insert, reserve (product gRPC), charge
  // (payment gRPC: fraud rules, sandbox provider, outbox), commit, confirm; about nine SQLite
  // write transactions over three database files. scripts/bench-orders.sh measures p50
  // 160-180 ms and p99 about 530 ms on the release build, but that is 16 connections in a
  // closed loop saturating the two cores (93 orders/s). Here the arrival rate is a fraction of
  // that, so p95 should sit far below 500 ms; 1 s leaves room for a slower machine and for the
  // reads sharing it, yet still fails a saga that waits on a retry or a timeout (a gRPC call's
  // deadline is ORDER_CALL_TIMEOUT = 5 s; a checkout answered 202 waited ORDER_CHECKOUT_WAIT =
  // 10 s), which is the regression this limit is here to catch.
  checkoutP95: envNumber('CHECKOUT_P95_MS', 1000),
  errorRate: envNumber('MAX_ERROR_RATE', 0.001),
};

// Arrival rates at the peak, in iterations per second (before RATE_SCALE), and think times
// (seconds, uniform between the two; before THINK_SCALE).
const SCENARIOS = {
  browse: { exec: 'browse', think: [1, 3], latency: 0.05 },
  search: { exec: 'search', think: [1, 3], latency: 0.05 },
  detail: { exec: 'detail', think: [1, 3], latency: 0.05 },
  login: { exec: 'login', think: [1, 2], latency: 0.3 },
  checkout: { exec: 'checkout', think: [2, 4], latency: 0.5 },
};

const PROFILES = {
  // CI: about 25 s of traffic at a low rate; every path exercised, thresholds checked.
  smoke: {
    rates: { browse: 8, search: 3, detail: 12, login: 1, checkout: 2 },
    stages: (peak) => [
      { duration: '5s', target: peak },
      { duration: '15s', target: peak },
      { duration: '5s', target: 0 },
    ],
  },
  // About 4 minutes: warm-up at half rate, a ramp to the peak, 2 minutes at the peak, ramp-down.
  load: {
    rates: { browse: 40, search: 12, detail: 60, login: 3, checkout: 6 },
    stages: (peak) => [
      { duration: '30s', target: Math.ceil(peak / 2) },
      { duration: '30s', target: peak },
      { duration: '2m', target: peak },
      { duration: '30s', target: 0 },
    ],
  },
};

if (!PROFILES[PROFILE]) {
  throw new Error(`PROFILE must be one of ${Object.keys(PROFILES).join(', ')} (it is "${PROFILE}")`);
}

function seconds(duration) {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(duration);
  if (!match) throw new Error(`unsupported duration ${duration}`);
  return Number(match[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[match[2]];
}

// Rates are given per second but set per minute, so that fractional rates (RATE_SCALE=0.3)
// stay exact.
function buildScenarios() {
  const profile = PROFILES[PROFILE];
  const scenarios = {};
  const plan = {};
  for (const [name, scenario] of Object.entries(SCENARIOS)) {
    const perSecond = profile.rates[name] * RATE_SCALE;
    const perMinute = Math.max(1, Math.round(perSecond * 60));
    const stages = profile.stages(perMinute);
    const meanThink = ((scenario.think[0] + scenario.think[1]) / 2) * THINK_SCALE;
    // Little's law: busy VUs = arrival rate × time per iteration, plus a margin.
    const busy = (perMinute / 60) * (meanThink + scenario.latency);
    const preAllocatedVUs = Math.ceil(busy * 1.2) + 2;
    const maxVUs = Math.ceil(preAllocatedVUs * 1.5) + 2;
    // Iterations the stages start (the area under the rate curve).
    let rate = 0;
    let iterations = 0;
    for (const stage of stages) {
      iterations += ((rate + stage.target) / 2 / 60) * seconds(stage.duration);
      rate = stage.target;
    }
    scenarios[name] = {
      executor: 'ramping-arrival-rate',
      exec: scenario.exec,
      startRate: 0,
      timeUnit: '1m',
      preAllocatedVUs,
      maxVUs,
      stages,
      gracefulStop: '30s',
    };
    plan[name] = { peakPerSecond: perMinute / 60, iterations: Math.ceil(iterations), maxVUs };
  }
  return { scenarios, plan };
}

const { scenarios, plan: PLAN } = buildScenarios();
const TOTAL_VUS = Object.values(PLAN).reduce((sum, p) => sum + p.maxVUs, 0);

// ---------------------------------------------------------------- metrics and thresholds

// One sample per checked response: true when any of its checks failed.
const checkFailures = new Rate('check_failures');
const ordersConfirmed = new Counter('orders_confirmed');
const ordersInProgress = new Counter('orders_in_progress');
const ordersFailed = new Counter('orders_failed');
// How long setup took (registration and logins), so that request rates exclude it.
const setupSeconds = new Gauge('setup_seconds');

function thresholds() {
  const t = {
    http_req_failed: [`rate<${LIMITS.errorRate}`],
    check_failures: [`rate<${LIMITS.errorRate}`],
    checks: [`rate>${1 - LIMITS.errorRate}`],
    orders_failed: ['count<1'],
  };
  for (const name of Object.keys(SCENARIOS)) {
    t[`http_req_failed{scenario:${name}}`] = [`rate<${LIMITS.errorRate}`];
    t[`check_failures{scenario:${name}}`] = [`rate<${LIMITS.errorRate}`];
    // Each scenario must actually have run (and this makes the per-scenario counts and rates
    // show in the summary).
    t[`http_reqs{scenario:${name}}`] = ['count>0'];
  }
  t['http_req_duration{scenario:browse}'] = [`p(99)<${LIMITS.readP99}`];
  t['http_req_duration{scenario:detail}'] = [`p(99)<${LIMITS.readP99}`];
  t['http_req_duration{scenario:search}'] = [`p(99)<${LIMITS.searchP99}`];
  t['http_req_duration{scenario:login}'] = [`p(95)<${LIMITS.loginP95}`];
  t['http_req_duration{scenario:checkout}'] = [`p(95)<${LIMITS.checkoutP95}`];
  // Reported per scenario, not limited.
  for (const name of Object.keys(SCENARIOS)) {
    t[`dropped_iterations{scenario:${name}}`] = ['count>=0'];
  }
  return t;
}

export const options = {
  scenarios,
  thresholds: thresholds(),
  // Registration hashes a password per user: give setup time on a slow (debug) build.
  setupTimeout: '5m',
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  userAgent: 'platform-load-test/1.0 (k6)',
};

// ---------------------------------------------------------------- helpers

const JSON_HEADERS = { 'Content-Type': 'application/json' };
const PASSWORD = 'load-test password 1234';

function think(range) {
  if (THINK_SCALE > 0) sleep((range[0] + Math.random() * (range[1] - range[0])) * THINK_SCALE);
}

function pick(items) {
  return items[Math.floor(Math.random() * items.length)];
}

function json(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

// check() with the outcome also recorded in check_failures (one sample per response).
function verify(res, checks) {
  const ok = check(res, checks);
  checkFailures.add(!ok);
  return ok;
}

function setupFailure(message) {
  exec.test.abort(`setup: ${message}`);
}

// Runs requests in parallel batches; fails setup unless each answers `status`.
function batchOrAbort(requests, status, what) {
  const responses = [];
  for (let i = 0; i < requests.length; i += 16) {
    const answers = http.batch(requests.slice(i, i + 16));
    for (const res of answers) {
      if (res.status !== status) {
        setupFailure(`${what}: HTTP ${res.status} ${String(res.body).slice(0, 300)}`);
      }
      responses.push(res);
    }
  }
  return responses;
}

function loginRequest(email, password, tags) {
  return ['POST', `${API}/auth/login`, JSON.stringify({ email, password }), { headers: JSON_HEADERS, tags }];
}

// ---------------------------------------------------------------- setup

export function setup() {
  const setupStarted = Date.now();
  const tags = { op: 'setup' };
  console.log(
    `load test: profile ${PROFILE}, build ${BUILD}, ${BASE_URL}; limits: reads p99 < ${LIMITS.readP99} ms, ` +
      `search p99 < ${LIMITS.searchP99} ms, login p95 < ${LIMITS.loginP95} ms, checkout p95 < ${LIMITS.checkoutP95} ms, ` +
      `errors < ${LIMITS.errorRate * 100}%`,
  );

  // The catalog, every page of it.
  const products = [];
  let total = Infinity;
  for (let page = 1; products.length < total && page <= 50; page += 1) {
    const res = http.get(`${API}/products?page=${page}&per_page=100`, { tags });
    const body = json(res);
    if (res.status !== 200 || !body || !Array.isArray(body.items)) {
      setupFailure(`GET /api/v1/products: HTTP ${res.status} ${String(res.body).slice(0, 300)}`);
    }
    total = body.total;
    if (body.items.length === 0) break;
    products.push(...body.items);
  }
  if (products.length === 0) {
    setupFailure('the catalog is empty (the embedded mode seeds one unless SEED_DEMO_DATA=false)');
  }
  const categories = [...new Set(products.map((p) => p.category))];
  const words = [
    ...new Set(
      products.flatMap((p) =>
        p.name
          .toLowerCase()
          .split(/[^a-z]+/)
          .filter((w) => w.length >= 3),
      ),
    ),
  ];

  // What checkout buys: products priced within one decade (10-99.99 in the currency), so that
  // no order is more than FRAUD_HISTORY_MULTIPLIER (10) times a shopper's average and held for
  // review; the ten with the most stock. One currency: the first product's.
  const currency = products[0].price.currency;
  let buyable = products
    .filter((p) => p.price.currency === currency && p.price.amount >= 1000 && p.price.amount < 10000)
    .sort((a, b) => b.available - a.available)
    .slice(0, 10);
  if (buyable.length === 0) buyable = products.slice(0, 10);
  const orders = PLAN.checkout.iterations;
  const perProduct = Math.ceil((orders * 3) / buyable.length) + 20;
  if (ADMIN_EMAIL && ADMIN_PASSWORD) {
    const [method, url, body, params] = loginRequest(ADMIN_EMAIL, ADMIN_PASSWORD, tags);
    const res = http.request(method, url, body, params);
    const token = res.status === 200 && json(res) ? json(res).access_token : null;
    if (!token) setupFailure(`administrator login: HTTP ${res.status} ${String(res.body).slice(0, 300)}`);
    const topUps = buyable
      .filter((p) => p.available < perProduct)
      .map((p) => [
        'PUT',
        `${API}/admin/products/${p.id}/inventory`,
        JSON.stringify({ delta: perProduct - p.available }),
        { headers: { ...JSON_HEADERS, Authorization: `Bearer ${token}` }, tags },
      ]);
    batchOrAbort(topUps, 200, 'stock top-up');
    for (const p of buyable) p.available = Math.max(p.available, perProduct);
    console.log(`setup: stock of ${topUps.length} of the ${buyable.length} checkout products raised to ${perProduct}`);
  }
  buyable = buyable.filter((p) => p.available > 0);
  const stock = buyable.reduce((sum, p) => sum + p.available, 0);
  if (buyable.length === 0) setupFailure('no product in stock to check out');
  if (stock < orders * 1.5) {
    console.warn(
      `setup: only ${stock} units in stock for about ${orders} orders; orders may fail for want of stock ` +
        '(give ADMIN_EMAIL/ADMIN_PASSWORD to top it up)',
    );
  }

  // One shopper per VU: register and log in TOTAL_VUS users, in parallel batches.
  const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
  const emails = [];
  for (let i = 0; i < TOTAL_VUS; i += 1) emails.push(`load-${run}-${i + 1}@example.com`);
  const started = Date.now();
  batchOrAbort(
    emails.map((email, i) => [
      'POST',
      `${API}/users`,
      JSON.stringify({ email, password: PASSWORD, name: `Load shopper ${i + 1}` }),
      { headers: JSON_HEADERS, tags },
    ]),
    201,
    'registration',
  );
  const issuedAt = Date.now();
  const logins = batchOrAbort(
    emails.map((email) => loginRequest(email, PASSWORD, tags)),
    200,
    'login',
  );
  const users = logins.map((res, i) => {
    const body = json(res);
    return { email: emails[i], token: body.access_token, expiresAt: issuedAt + body.expires_in * 1000 };
  });
  console.log(
    `setup: ${products.length} products (${buyable.length} for checkout, ${stock} units), ${users.length} shoppers ` +
      `registered and logged in in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );

  setupSeconds.add((Date.now() - setupStarted) / 1000);
  return {
    products: products.map((p) => p.id),
    buyable: buyable.map((p) => ({ id: p.id, weight: p.available })),
    maxPage: Math.max(1, Math.ceil(products.length / 20)),
    categories,
    words,
    users,
  };
}

// ---------------------------------------------------------------- scenarios

// Browse: list pages, with and without filters; a small set of combinations, as a shop's
// navigation offers them (and as a cache sees them).
export function browse(data) {
  const page = 1 + Math.floor(Math.random() * data.maxPage);
  const variants = [
    `page=${page}&per_page=20`,
    `page=1&per_page=20&category=${encodeURIComponent(pick(data.categories))}`,
    `page=1&per_page=20&category=${encodeURIComponent(pick(data.categories))}&sort=${pick(['price_asc', 'price_desc', 'name'])}`,
    `page=1&per_page=20&in_stock=true&sort=newest`,
    `page=1&per_page=20&min_price=1000&max_price=5000&sort=price_asc`,
  ];
  const query = pick(variants);
  const res = http.get(`${API}/products?${query}`, { tags: { name: 'GET /api/v1/products', op: 'browse' } });
  const body = json(res);
  verify(res, {
    'browse: status 200': (r) => r.status === 200,
    'browse: a page of products': () => !!body && Array.isArray(body.items) && body.items.length <= 20 && body.per_page === 20,
  });
  think(SCENARIOS.browse.think);
}

// Search: one word of a product's name, or its first letters (every word matches as a prefix).
export function search(data) {
  const word = pick(data.words);
  const q = Math.random() < 0.5 ? word : word.slice(0, Math.max(3, Math.ceil(word.length / 2)));
  const res = http.get(`${API}/products/search?q=${encodeURIComponent(q)}&page=1&per_page=20`, {
    tags: { name: 'GET /api/v1/products/search', op: 'search' },
  });
  const body = json(res);
  verify(res, {
    'search: status 200': (r) => r.status === 200,
    'search: finds the product': () => !!body && Array.isArray(body.items) && body.total >= 1,
  });
  think(SCENARIOS.search.think);
}

// Product detail.
export function detail(data) {
  const id = pick(data.products);
  const res = http.get(`${API}/products/${id}`, { tags: { name: 'GET /api/v1/products/{id}', op: 'detail' } });
  const body = json(res);
  verify(res, {
    'detail: status 200': (r) => r.status === 200,
    'detail: the product asked for': () => !!body && body.id === id,
  });
  think(SCENARIOS.detail.think);
}

// This VU's shopper, and a valid access token for it (logged in again shortly before the one
// from setup expires, for runs longer than JWT_EXPIRATION).
let session = null;
function shopper(data) {
  const user = data.users[(exec.vu.idInTest - 1) % data.users.length];
  if (!session || session.email !== user.email) session = { ...user };
  if (Date.now() > session.expiresAt - 60 * 1000) logIn(session, 'relogin');
  return session;
}

function logIn(user, op) {
  const [method, url, body, params] = loginRequest(user.email, PASSWORD, {
    name: 'POST /api/v1/auth/login',
    op,
  });
  const started = Date.now();
  const res = http.request(method, url, body, params);
  const answer = json(res);
  const ok = verify(res, {
    'login: status 200': (r) => r.status === 200,
    'login: an access token': () => !!answer && typeof answer.access_token === 'string' && answer.access_token.length > 0,
  });
  if (ok) {
    user.token = answer.access_token;
    user.expiresAt = started + answer.expires_in * 1000;
  }
  return ok;
}

// Login: the VU's own shopper logs in again (a new session each time).
export function login(data) {
  logIn(shopper(data), 'login');
  think(SCENARIOS.login.think);
}

function pickWeighted(items) {
  const total = items.reduce((sum, item) => sum + item.weight, 0);
  let at = Math.random() * total;
  for (const item of items) {
    at -= item.weight;
    if (at < 0) return item;
  }
  return items[items.length - 1];
}

let failuresLogged = 0;

// Checkout: one unit of one product, paid with the sandbox's tok_visa (a card per shopper).
// 201 once the saga is over (must be confirmed), 202 while it still runs: both succeed.
export function checkout(data) {
  const user = shopper(data);
  const product = pickWeighted(data.buyable);
  const vu = exec.vu.idInTest;
  const payload = {
    items: [{ product_id: product.id, quantity: 1 }],
    payment: { token: 'tok_visa' },
    shipping_address: {
      name: `Load shopper ${vu}`,
      line1: `${vu} Teststrasse`,
      city: 'Berlin',
      postal_code: '10115',
      country: 'DE',
    },
  };
  const res = http.post(`${API}/orders`, JSON.stringify(payload), {
    headers: { ...JSON_HEADERS, Authorization: `Bearer ${user.token}`, 'Idempotency-Key': crypto.randomUUID() },
    tags: { name: 'POST /api/v1/orders', op: 'checkout' },
  });
  const body = json(res);
  const status = body ? body.status : undefined;
  verify(res, {
    'checkout: status 201 or 202': (r) => r.status === 201 || r.status === 202,
    'checkout: confirmed, or still running': (r) =>
      (r.status === 201 && status === 'confirmed') ||
      (r.status === 202 && status !== 'failed' && status !== 'cancelled'),
  });
  if (res.status === 201 && status === 'confirmed') ordersConfirmed.add(1);
  else if (res.status === 202) ordersInProgress.add(1);
  else {
    ordersFailed.add(1);
    failuresLogged += 1;
    if (failuresLogged <= 3) {
      const why = body && body.failure_reason ? `order ${body.id} ${status}: ${body.failure_reason}` : String(res.body).slice(0, 200);
      console.warn(`checkout (VU ${vu}): HTTP ${res.status} ${why}`);
    }
  }
  think(SCENARIOS.checkout.think);
}

// ---------------------------------------------------------------- summary

function metricValue(data, name, stat) {
  const metric = data.metrics[name];
  return metric && metric.values ? metric.values[stat] : undefined;
}

// Seconds of traffic: the run less setup.
function trafficSeconds(data) {
  return data.state.testRunDurationMs / 1000 - (metricValue(data, 'setup_seconds', 'value') || 0);
}

// Per scenario: requests, requests/s (over the traffic, ramps included), latency, errors, checks.
function scenarioRows(data) {
  const seconds = trafficSeconds(data);
  return Object.keys(SCENARIOS).map((name) => {
    const duration = `http_req_duration{scenario:${name}}`;
    const count = metricValue(data, `http_reqs{scenario:${name}}`, 'count') || 0;
    return {
      scenario: name,
      peak_rate: PLAN[name].peakPerSecond,
      requests: count,
      rps: seconds > 0 ? count / seconds : 0,
      p50_ms: metricValue(data, duration, 'med'),
      p95_ms: metricValue(data, duration, 'p(95)'),
      p99_ms: metricValue(data, duration, 'p(99)'),
      max_ms: metricValue(data, duration, 'max'),
      error_rate: metricValue(data, `http_req_failed{scenario:${name}}`, 'rate'),
      check_failure_rate: metricValue(data, `check_failures{scenario:${name}}`, 'rate'),
      dropped_iterations: metricValue(data, `dropped_iterations{scenario:${name}}`, 'count') || 0,
    };
  });
}

function thresholdRows(data) {
  const rows = [];
  for (const name of Object.keys(data.metrics).sort()) {
    const metric = data.metrics[name];
    for (const [expression, result] of Object.entries(metric.thresholds || {})) {
      rows.push({ metric: name, threshold: expression, ok: result.ok });
    }
  }
  return rows;
}

function fmt(value, digits = 2) {
  if (value === undefined || value === null || Number.isNaN(value)) return '-';
  return Number(value).toFixed(digits);
}

function pct(value) {
  return value === undefined || value === null ? '-' : `${(value * 100).toFixed(3)}%`;
}

function metricLine(name, metric) {
  const v = metric.values;
  switch (metric.type) {
    case 'trend':
      if (metric.contains === 'time') {
        return ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)']
          .map((s) => `${s}=${fmt(v[s])}ms`)
          .concat(`count=${v.count}`)
          .join(' ');
      }
      return Object.entries(v).map(([s, x]) => `${s}=${fmt(x)}`).join(' ');
    case 'counter':
      return `${v.count} (${fmt(v.rate)}/s)`;
    case 'rate':
      return `${pct(v.rate)} (${v.passes} of ${v.passes + v.fails})`;
    case 'gauge':
      return `${v.value} (min ${v.min}, max ${v.max})`;
    default:
      return JSON.stringify(v);
  }
}

function textSummary(data, files) {
  const lines = [];
  const thresholdsOk = thresholdRows(data).every((t) => t.ok);
  lines.push('');
  lines.push(
    `load test: profile ${PROFILE}, build ${BUILD}, ${BASE_URL}: ${fmt(data.state.testRunDurationMs / 1000, 1)} s ` +
      `(setup ${fmt(metricValue(data, 'setup_seconds', 'value'), 1)} s; rps below are over the ${fmt(trafficSeconds(data), 1)} s after it)`,
  );
  lines.push('');
  lines.push('  scenario   peak/s  requests     rps   p50 ms   p95 ms   p99 ms   max ms    errors  check fails  dropped');
  for (const r of scenarioRows(data)) {
    lines.push(
      `  ${r.scenario.padEnd(9)} ${fmt(r.peak_rate, 1).padStart(7)} ${String(r.requests).padStart(9)} ${fmt(r.rps, 1).padStart(7)} ` +
        `${fmt(r.p50_ms).padStart(8)} ${fmt(r.p95_ms).padStart(8)} ${fmt(r.p99_ms).padStart(8)} ${fmt(r.max_ms).padStart(8)} ` +
        `${pct(r.error_rate).padStart(9)} ${pct(r.check_failure_rate).padStart(12)} ${String(r.dropped_iterations).padStart(8)}`,
    );
  }
  lines.push('');
  lines.push('  thresholds:');
  for (const t of thresholdRows(data)) {
    if (t.metric.startsWith('dropped_iterations')) continue;
    const value = data.metrics[t.metric];
    lines.push(`    ${t.ok ? 'ok  ' : 'FAIL'} ${t.metric} ${t.threshold}   (${metricLine(t.metric, value)})`);
  }
  lines.push('');
  lines.push('  checks:');
  const checks = [];
  const walk = (group) => {
    checks.push(...group.checks);
    group.groups.forEach(walk);
  };
  walk(data.root_group);
  for (const c of checks) {
    lines.push(`    ${c.fails === 0 ? 'ok  ' : 'FAIL'} ${c.name}: ${c.passes} passed, ${c.fails} failed`);
  }
  lines.push('');
  lines.push('  metrics:');
  for (const name of Object.keys(data.metrics).sort()) {
    if (name.includes('{')) continue;
    lines.push(`    ${name.padEnd(26, '.')} ${metricLine(name, data.metrics[name])}`);
  }
  lines.push('');
  lines.push(`  thresholds: ${thresholdsOk ? 'all met' : 'SOME FAILED'}`);
  lines.push(`  summaries: ${files.join(', ')}`);
  lines.push('');
  return lines.join('\n');
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function htmlSummary(data) {
  const thresholds = thresholdRows(data).filter((t) => !t.metric.startsWith('dropped_iterations'));
  const allOk = thresholds.every((t) => t.ok);
  const cell = (value, cls = '') => `<td${cls ? ` class="${cls}"` : ''}>${escapeHtml(value)}</td>`;
  const scenarioTable = scenarioRows(data)
    .map(
      (r) =>
        `<tr>${cell(r.scenario)}${cell(fmt(r.peak_rate, 1), 'n')}${cell(r.requests, 'n')}${cell(fmt(r.rps, 1), 'n')}` +
        `${cell(fmt(r.p50_ms), 'n')}${cell(fmt(r.p95_ms), 'n')}${cell(fmt(r.p99_ms), 'n')}${cell(fmt(r.max_ms), 'n')}` +
        `${cell(pct(r.error_rate), 'n')}${cell(pct(r.check_failure_rate), 'n')}${cell(r.dropped_iterations, 'n')}</tr>`,
    )
    .join('\n');
  const thresholdTable = thresholds
    .map(
      (t) =>
        `<tr class="${t.ok ? 'ok' : 'fail'}">${cell(t.ok ? 'ok' : 'FAIL')}${cell(t.metric)}${cell(t.threshold)}` +
        `${cell(metricLine(t.metric, data.metrics[t.metric]))}</tr>`,
    )
    .join('\n');
  const metricTable = Object.keys(data.metrics)
    .sort()
    .filter((name) => !name.includes('{'))
    .map((name) => `<tr>${cell(name)}${cell(data.metrics[name].type)}${cell(metricLine(name, data.metrics[name]))}</tr>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Load test: ${escapeHtml(PROFILE)} (${allOk ? 'passed' : 'failed'})</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 2rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.ok td:first-child { color: #176f2c; font-weight: bold; }
tr.fail td { background: #fde2e1; }
tr.fail td:first-child { color: #a4161a; font-weight: bold; }
.verdict { font-size: 1.2rem; font-weight: bold; color: ${allOk ? '#176f2c' : '#a4161a'}; }
</style></head><body>
<h1>Load test through the API gateway</h1>
<p>Profile <b>${escapeHtml(PROFILE)}</b>, build <b>${escapeHtml(BUILD)}</b>, ${escapeHtml(BASE_URL)};
run of ${fmt(data.state.testRunDurationMs / 1000, 1)} s (setup ${fmt(metricValue(data, 'setup_seconds', 'value'), 1)} s, requests/s over the
${fmt(trafficSeconds(data), 1)} s after it, ramps included) finished ${escapeHtml(new Date().toISOString())}.</p>
<p class="verdict">Thresholds: ${allOk ? 'all met' : 'some failed'}</p>
<h2>Scenarios</h2>
<table><tr><th>scenario</th><th>peak arrivals/s</th><th>requests</th><th>requests/s</th><th>p50 ms</th><th>p95 ms</th>
<th>p99 ms</th><th>max ms</th><th>failed requests</th><th>failed checks</th><th>dropped iterations</th></tr>
${scenarioTable}
</table>
<h2>Thresholds</h2>
<table><tr><th></th><th>metric</th><th>threshold</th><th>value</th></tr>
${thresholdTable}
</table>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>type</th><th>value</th></tr>
${metricTable}
</table>
</body></html>
`;
}

export function handleSummary(data) {
  const base = `${SUMMARY_DIR}/api_gateway_test-${PROFILE}`;
  const files = [`${base}.json`, `${base}.html`];
  const report = {
    profile: PROFILE,
    build: BUILD,
    base_url: BASE_URL,
    duration_s: data.state.testRunDurationMs / 1000,
    traffic_s: trafficSeconds(data),
    limits_ms: LIMITS,
    thresholds_ok: thresholdRows(data).every((t) => t.ok),
    scenarios: scenarioRows(data),
    thresholds: thresholdRows(data),
    k6: data,
  };
  return {
    stdout: textSummary(data, files),
    [files[0]]: JSON.stringify(report, null, 2),
    [files[1]]: htmlSummary(data),
  };
}
