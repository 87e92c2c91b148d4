// Contract test: drives a running Lantern through the real @backstage/catalog-client.
//
// Env:  LANTERN_URL       server root, e.g. http://127.0.0.1:8000 (the client gets LANTERN_URL/api/catalog)
//       LANTERN_TOKEN     bearer token of a user who may view and delete entities
//       LANTERN_EXPECTED  path to a JSON array of the full entity documents the server holds
//       LANTERN_LOCATION_TARGET, LANTERN_LOCATION_REFS  (optional) the URL of a catalog file the
//                         server can read and a JSON array of the refs of the entities it holds:
//                         the locations checks run only with them (Backstage's in-memory
//                         reference client has no locations, so the reference run skips them)
//
// Every expectation is computed here from LANTERN_EXPECTED. Nothing is hard-coded about the data
// except the names this suite uses in its queries (tags, types, namespaces). A check that a query
// must match at least one entity fails loudly, so it can never pass vacuously.
// Output: one "ok - <check>" line per check. The last line is "contract: N passed, F failed".
// The script stops at the first failure and exits with status 1.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CatalogClient, CATALOG_FILTER_EXISTS } from '@backstage/catalog-client';

const { LANTERN_URL, LANTERN_TOKEN, LANTERN_EXPECTED } = process.env;
for (const [k, v] of Object.entries({ LANTERN_URL, LANTERN_TOKEN, LANTERN_EXPECTED })) {
  if (!v) {
    console.error(`contract: environment variable ${k} is required`);
    process.exit(2);
  }
}

const baseUrl = `${LANTERN_URL.replace(/\/+$/, '')}/api/catalog`;
const requests = []; // [method, url] of every request, for checks on routing
function makeClient(token) {
  return new CatalogClient({
    discoveryApi: { getBaseUrl: async () => baseUrl },
    fetchApi: {
      fetch: async (input, init = {}) => {
        const headers = new Headers(init.headers);
        if (token) headers.set('Authorization', `Bearer ${token}`);
        requests.push([init.method ?? 'GET', String(input)]);
        return fetch(input, { ...init, headers });
      },
    },
  });
}
const client = makeClient(LANTERN_TOKEN);

const dataset = JSON.parse(readFileSync(LANTERN_EXPECTED, 'utf8'));
assert.ok(Array.isArray(dataset) && dataset.length > 0, 'LANTERN_EXPECTED must be a non-empty array');

// ---------------------------------------------------------------- helpers
const lc = v => (typeof v === 'string' ? v.toLowerCase() : v);
const ns = e => e.metadata.namespace ?? 'default';
// Same as stringifyEntityRef from @backstage/catalog-model (it lower-cases all three parts).
const refOf = e => `${e.kind}:${ns(e)}/${e.metadata.name}`.toLowerCase();
const byRef = new Map(dataset.map(e => [refOf(e), e]));
const tags = e => e.metadata.tags ?? [];
const annotations = e => e.metadata.annotations ?? {};
const relations = e => e.relations ?? [];
const specType = e => e.spec?.type;
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const nameKey = e => lc(e.metadata.name);
const sortedRefs = items => items.map(refOf).sort();

function getPath(obj, path) {
  let cur = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !(part in cur)) return undefined;
    cur = cur[part];
  }
  return cur;
}
// What `fields` should leave of an entity: only the requested dotted paths that exist.
function project(e, fields) {
  const out = {};
  for (const f of fields) {
    const v = getPath(e, f);
    if (v === undefined) continue;
    const parts = f.split('.');
    let cur = out;
    for (const p of parts.slice(0, -1)) cur = cur[p] ??= {};
    cur[parts.at(-1)] = v;
  }
  return out;
}
const canon = v => JSON.stringify(v, Object.keys(flattenKeys(v)).sort());
function flattenKeys(v, acc = {}) {
  if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) { acc[k] = 1; flattenKeys(x, acc); }
  return acc;
}
function expectNonEmpty(list, what) {
  assert.ok(list.length > 0, `test data problem: no entity in LANTERN_EXPECTED matches ${what}`);
  return list;
}
function assertSameEntitySet(actual, expected, what) {
  const a = sortedRefs(actual);
  assert.equal(new Set(a).size, a.length, `${what}: duplicate entities in ${JSON.stringify(a)}`);
  assert.deepEqual(a, sortedRefs(expected), `${what}: wrong set of entities`);
}
function assertSortedByName(items, dir, what) {
  const names = items.map(nameKey);
  const want = [...names].sort((x, y) => (dir === 'asc' ? cmp(x, y) : cmp(y, x)));
  assert.deepEqual(names, want, `${what}: not ordered by metadata.name ${dir}`);
}
// Facet counts as the catalog computes them: one count per entity per distinct value at the path,
// array elements counted separately, values in their original case.
function facetCounts(entities, path) {
  const counts = new Map();
  for (const e of entities) {
    let v = path === 'metadata.namespace' ? ns(e) : getPath(e, path);
    if (v === undefined || v === null) continue;
    const values = new Set((Array.isArray(v) ? v : [v]).filter(x => x !== null && typeof x !== 'object').map(String));
    for (const x of values) counts.set(x, (counts.get(x) ?? 0) + 1);
  }
  return [...counts].map(([value, count]) => ({ value, count })).sort((a, b) => cmp(a.value, b.value));
}
const sortFacet = list => [...list].sort((a, b) => cmp(a.value, b.value));

// ---------------------------------------------------------------- runner
// CONTRACT_ONLY=<regex> runs only the matching checks. CONTRACT_CONTINUE=1 keeps going after a
// failure (for diagnosis; later checks may then fail as a consequence). The default stops at the first one.
let passed = 0;
let failed = 0;
const only = process.env.CONTRACT_ONLY ? new RegExp(process.env.CONTRACT_ONLY) : null;
const keepGoing = process.env.CONTRACT_CONTINUE === '1';
async function check(name, fn) {
  if (only && !only.test(name)) return;
  try {
    await fn();
  } catch (err) {
    failed += 1;
    console.error(`FAIL - ${name}`);
    console.error(err?.stack ?? String(err));
    if (err?.name === 'ResponseError') {
      console.error(`  response body: ${JSON.stringify(err.body)}`);
    }
    const last = requests.slice(-3).map(([m, u]) => `${m} ${u}`);
    console.error(`  last requests:\n    ${last.join('\n    ')}`);
    console.log(`FAIL - ${name}: ${String(err?.message ?? err).split('\n')[0]}`);
    if (keepGoing) return;
    console.log(`contract: ${passed} passed, ${failed} failed`);
    process.exit(1);
  }
  passed += 1;
  console.log(`ok - ${name}`);
}

// Walks queryEntities by nextCursor. Returns the pages. Checks the page invariants on the way.
async function walk(what, initial, { limit, fields } = {}) {
  const pages = [];
  let res = await client.queryEntities({ ...initial, limit });
  for (;;) {
    assert.ok(Array.isArray(res.items), `${what}: page ${pages.length + 1} has no items array`);
    assert.equal(typeof res.totalItems, 'number', `${what}: totalItems missing on page ${pages.length + 1}`);
    assert.ok(res.pageInfo && typeof res.pageInfo === 'object', `${what}: pageInfo missing`);
    assert.ok(res.items.length <= limit, `${what}: page ${pages.length + 1} has ${res.items.length} > limit ${limit} items`);
    if (pages.length === 0) assert.equal(res.pageInfo.prevCursor, undefined, `${what}: first page has a prevCursor`);
    pages.push(res);
    if (!res.pageInfo.nextCursor) break;
    assert.equal(res.items.length, limit, `${what}: non-final page ${pages.length} is not full`);
    assert.ok(pages.length < 200, `${what}: more than 200 pages, the cursor does not advance`);
    res = await client.queryEntities({ cursor: res.pageInfo.nextCursor, limit, ...(fields && { fields }) });
  }
  return pages;
}
async function checkWalk(what, initial, expected, { limit, order } = {}) {
  expectNonEmpty(expected, what);
  const pages = await walk(what, initial, { limit });
  const all = pages.flatMap(p => p.items);
  assertSameEntitySet(all, expected, what);
  for (const [i, p] of pages.entries()) {
    assert.equal(p.totalItems, expected.length, `${what}: totalItems on page ${i + 1}`);
  }
  assert.equal(pages.length, Math.ceil(expected.length / limit), `${what}: number of pages`);
  if (order) assertSortedByName(all, order, what);
  return pages;
}
// prevCursor of the last page must lead back to the page before it.
async function checkWalkBack(what, pages, limit) {
  assert.ok(pages.length >= 2, `test data problem: ${what} needs at least two pages`);
  const last = pages.at(-1);
  assert.ok(last.pageInfo.prevCursor, `${what}: last page has no prevCursor`);
  const back = await client.queryEntities({ cursor: last.pageInfo.prevCursor, limit });
  assert.deepEqual(back.items.map(refOf), pages.at(-2).items.map(refOf), `${what}: prevCursor page differs from the page before`);
  assert.ok(back.pageInfo.nextCursor, `${what}: page reached by prevCursor has no nextCursor`);
}

// ---------------------------------------------------------------- the data this suite relies on
const isKind = k => e => lc(e.kind) === k;
const components = dataset.filter(isKind('component'));
const services = components.filter(e => lc(specType(e)) === 'service');
expectNonEmpty(services, 'kind=component,spec.type=service');
const multiNs = new Set(dataset.map(ns));
assert.ok(multiNs.size >= 2, 'test data problem: LANTERN_EXPECTED should span at least two namespaces');
const TECHDOCS = 'backstage.io/techdocs-ref';
const techdocs = dataset.filter(e => TECHDOCS in annotations(e));
const TAG = 'python';
const tagged = dataset.filter(e => tags(e).includes(TAG));
const ownerRel = dataset.flatMap(relations).find(r => lc(r.type) === 'ownedby')?.targetRef;
assert.ok(ownerRel, 'test data problem: no ownedBy relation in LANTERN_EXPECTED (relations missing from documents?)');
const ownedBy = ref => e => relations(e).some(r => lc(r.type) === 'ownedby' && lc(r.targetRef) === lc(ref));

// ---------------------------------------------------------------- getEntities
await check('getEntities without filter returns every entity (bare array)', async () => {
  const { items } = await client.getEntities();
  assertSameEntitySet(items, dataset, 'getEntities()');
  for (const e of items) assert.deepEqual(e, byRef.get(refOf(e)), `getEntities(): document of ${refOf(e)} differs`);
});

await check('getEntities filter: one set, AND of two keys (values case-insensitive)', async () => {
  const { items } = await client.getEntities({ filter: { kind: 'Component', 'spec.type': 'SERVICE' } });
  assertSameEntitySet(items, services, 'kind=Component,spec.type=SERVICE');
});

await check('getEntities filter: array of two sets is an OR', async () => {
  const expected = expectNonEmpty(dataset.filter(e => ['api', 'system'].includes(lc(e.kind))), 'kind api|system');
  const { items } = await client.getEntities({ filter: [{ kind: 'API' }, { kind: 'system' }] });
  assertSameEntitySet(items, expected, '[{kind:API},{kind:system}]');
});

await check('getEntities filter: several values for one key is an OR', async () => {
  const expected = expectNonEmpty(components.filter(e => ['service', 'website'].includes(lc(specType(e)))), 'service|website');
  const { items } = await client.getEntities({ filter: { kind: 'component', 'spec.type': ['service', 'website'] } });
  assertSameEntitySet(items, expected, "{kind:component,'spec.type':[service,website]}");
});

await check('getEntities filter: key exists (CATALOG_FILTER_EXISTS)', async () => {
  expectNonEmpty(techdocs, `annotation ${TECHDOCS}`);
  const { items } = await client.getEntities({ filter: { [`metadata.annotations.${TECHDOCS}`]: CATALOG_FILTER_EXISTS } });
  assertSameEntitySet(items, techdocs, `metadata.annotations.${TECHDOCS} exists`);
});

await check('getEntities filter: tag (metadata.tags=<tag>) and metadata.tags.<tag> exists', async () => {
  expectNonEmpty(tagged, `tag ${TAG}`);
  const a = await client.getEntities({ filter: { 'metadata.tags': TAG } });
  assertSameEntitySet(a.items, tagged, `metadata.tags=${TAG}`);
  const b = await client.getEntities({ filter: { [`metadata.tags.${TAG}`]: CATALOG_FILTER_EXISTS } });
  assertSameEntitySet(b.items, tagged, `metadata.tags.${TAG}`);
});

await check('getEntities filter: metadata.namespace and relations.ownedBy', async () => {
  const other = [...multiNs].find(n => n !== 'default');
  const a = await client.getEntities({ filter: { 'metadata.namespace': other } });
  assertSameEntitySet(a.items, dataset.filter(e => ns(e) === other), `metadata.namespace=${other}`);
  const b = await client.getEntities({ filter: { 'relations.ownedBy': ownerRel } });
  assertSameEntitySet(b.items, dataset.filter(ownedBy(ownerRel)), `relations.ownedBy=${ownerRel}`);
});

await check('getEntities filter matching nothing returns []', async () => {
  const { items } = await client.getEntities({ filter: { kind: 'component', 'spec.type': 'no-such-type' } });
  assert.deepEqual(items, []);
});

await check('getEntities fields: only the requested fields are present', async () => {
  const fields = ['kind', 'metadata.name', 'metadata.namespace'];
  const { items } = await client.getEntities({ filter: { kind: 'component' }, fields });
  const want = components.map(e => canon(project(e, fields))).sort();
  assert.deepEqual(items.map(canon).sort(), want, 'projection differs');
  for (const it of items) {
    assert.deepEqual(Object.keys(it).sort(), ['kind', 'metadata']);
    assert.deepEqual(Object.keys(it.metadata).sort(), ['name', 'namespace']);
  }
  const t = await client.getEntities({ filter: { 'metadata.tags': TAG }, fields: ['metadata.tags', 'spec.type'] });
  assert.deepEqual(t.items.map(canon).sort(), tagged.map(e => canon(project(e, ['metadata.tags', 'spec.type']))).sort());
});

await check('getEntities order by metadata.name asc and desc', async () => {
  const asc = await client.getEntities({ order: { field: 'metadata.name', order: 'asc' } });
  assertSameEntitySet(asc.items, dataset, 'order asc');
  assertSortedByName(asc.items, 'asc', 'order asc');
  const desc = await client.getEntities({ filter: { kind: 'component' }, order: [{ field: 'metadata.name', order: 'desc' }] });
  assertSameEntitySet(desc.items, components, 'order desc');
  assertSortedByName(desc.items, 'desc', 'order desc');
});

await check('getEntities limit/offset with order', async () => {
  const names = dataset.map(nameKey).sort(cmp);
  const { items } = await client.getEntities({ order: { field: 'metadata.name', order: 'asc' }, limit: 3, offset: 2 });
  assert.deepEqual(items.map(nameKey), names.slice(2, 5));
});

// ---------------------------------------------------------------- getEntityByRef
const sample = services[0];
await check('getEntityByRef returns the full document', async () => {
  const got = await client.getEntityByRef(refOf(sample));
  assert.deepEqual(got, sample);
  const nsDefault = dataset.find(e => ns(e) === 'default' && lc(e.kind) === 'component');
  const short = await client.getEntityByRef(`component:${nsDefault.metadata.name}`);
  assert.deepEqual(short, nsDefault, 'ref without namespace should default to "default"');
});

await check('getEntityByRef is case-insensitive on kind, namespace and name', async () => {
  const e = dataset.find(x => x.metadata.name !== x.metadata.name.toLowerCase()) ?? sample;
  const weird = `${e.kind.toUpperCase()}:${ns(e).toUpperCase()}/${e.metadata.name.toUpperCase()}`;
  assert.deepEqual(await client.getEntityByRef(weird), e, weird);
});

await check('getEntityByRef returns undefined for a missing entity', async () => {
  assert.equal(await client.getEntityByRef('component:default/no-such-entity-xyz'), undefined);
  assert.equal(await client.getEntityByRef('nosuchkind:nowhere/nothing'), undefined);
});

// ---------------------------------------------------------------- getEntitiesByRefs
const [refA, refB] = [refOf(dataset[0]), refOf(dataset.at(-1))];
const MISSING = 'component:default/no-such-entity-xyz';
await check('getEntitiesByRefs keeps request order, undefined for a missing ref', async () => {
  const { items } = await client.getEntitiesByRefs({ entityRefs: [refB, MISSING, refA] });
  assert.equal(items.length, 3);
  assert.deepEqual(items[0], byRef.get(refB));
  assert.equal(items[1], undefined);
  assert.deepEqual(items[2], byRef.get(refA));
});

await check('getEntitiesByRefs splits 2,500 refs into chunks and keeps the order', async () => {
  const refs = Array.from({ length: 2500 }, (_, i) => (i % 500 === 7 ? refA : `component:default/missing-${i}`));
  const before = requests.length;
  const { items } = await client.getEntitiesByRefs({ entityRefs: refs, fields: ['kind', 'metadata.name'] });
  const posts = requests.slice(before).filter(([m, u]) => m === 'POST' && u.startsWith(`${baseUrl}/entities/by-refs`));
  assert.ok(posts.length >= 3, `expected at least 3 chunked requests, got ${posts.length}`);
  assert.equal(items.length, refs.length);
  items.forEach((item, i) => {
    if (refs[i] === refA) assert.deepEqual(item, project(byRef.get(refA), ['kind', 'metadata.name']), `item ${i}`);
    else assert.equal(item, undefined, `item ${i} should be undefined`);
  });
});

await check('getEntitiesByRefs with fields', async () => {
  const fields = ['kind', 'metadata.name'];
  const { items } = await client.getEntitiesByRefs({ entityRefs: [refA, MISSING, refB], fields });
  assert.deepEqual(items, [project(byRef.get(refA), fields), undefined, project(byRef.get(refB), fields)]);
});

await check('getEntitiesByRefs with a legacy filter (non-matching refs are undefined)', async () => {
  const nonComponent = dataset.find(e => !isKind('component')(e));
  const refs = [refOf(sample), refOf(nonComponent)];
  const { items } = await client.getEntitiesByRefs({ entityRefs: refs, filter: { kind: 'component' } });
  assert.deepEqual(items, [sample, undefined]);
});

await check('getEntitiesByRefs with a predicate query', async () => {
  const nonComponent = dataset.find(e => !isKind('component')(e));
  const refs = [refOf(nonComponent), MISSING, refOf(sample)];
  const { items } = await client.getEntitiesByRefs({ entityRefs: refs, query: { kind: { $in: ['Component'] } } });
  assert.deepEqual(items, [undefined, undefined, sample]);
  const both = await client.getEntitiesByRefs({
    entityRefs: [refOf(sample)],
    query: { $not: { 'spec.type': 'service' } },
    filter: { kind: 'component' },
  });
  assert.deepEqual(both.items, [undefined], 'query and filter are combined with $all');
});

// ---------------------------------------------------------------- queryEntities
const order = { field: 'metadata.name', order: 'asc' };
await check('queryEntities walks all pages by cursor (filter, limit 2, ordered)', async () => {
  const pages = await checkWalk('components by name', { filter: { kind: 'component' }, orderFields: order }, components, { limit: 2, order: 'asc' });
  await checkWalkBack('components by name', pages, 2);
});

await check('queryEntities walks all pages (OR filter, default order, limit 3)', async () => {
  const expected = dataset.filter(e => ['api', 'system', 'resource'].includes(lc(e.kind)) || tags(e).includes(TAG));
  await checkWalk('api|system|resource|tag', { filter: [{ kind: ['API', 'system', 'resource'] }, { 'metadata.tags': TAG }] }, expected, { limit: 3 });
});

await check('queryEntities with fields on every page', async () => {
  const fields = ['kind', 'metadata.name', 'metadata.namespace'];
  const pages = await walk('fields walk', { filter: { kind: 'component' }, fields, orderFields: order }, { limit: 2, fields });
  const all = pages.flatMap(p => p.items);
  assert.deepEqual(all.map(canon).sort(), components.map(e => canon(project(e, fields))).sort());
});

await check('queryEntities with a filter matching nothing', async () => {
  const res = await client.queryEntities({ filter: { kind: 'component', 'spec.type': 'no-such-type' }, limit: 2 });
  assert.deepEqual(res.items, []);
  assert.equal(res.totalItems, 0);
  assert.equal(res.pageInfo.nextCursor, undefined);
});

await check('queryEntities predicate $all + $in walks by cursor, pages go to POST', async () => {
  const expected = components.filter(e => ['service', 'website'].includes(lc(specType(e))));
  const before = requests.length;
  const pages = await checkWalk('$all/$in', { query: { $all: [{ kind: 'component' }, { 'spec.type': { $in: ['service', 'website'] } }] }, orderFields: order }, expected, { limit: 2, order: 'asc' });
  const sent = requests.slice(before).map(([m, u]) => `${m} ${u.slice(baseUrl.length).split('?')[0]}`);
  assert.deepEqual(sent, pages.map(() => 'POST /entities/by-query'),
    'every page of a predicate query must be POSTed: nextCursor must be base64(JSON) with a "query" key');
  await checkWalkBack('$all/$in', pages, 2);
});

await check('queryEntities predicate $any + $contains (tags)', async () => {
  const expected = dataset.filter(e => isKind('api')(e) || tags(e).includes(TAG));
  await checkWalk('$any/$contains', { query: { $any: [{ kind: 'api' }, { 'metadata.tags': { $contains: TAG } }] } }, expected, { limit: 3 });
});

await check('queryEntities predicate $not + $exists', async () => {
  const expected = components.filter(e => !(TECHDOCS in annotations(e)));
  await checkWalk('$not/$exists', { query: { $all: [{ kind: 'component' }, { $not: { [`metadata.annotations.${TECHDOCS}`]: { $exists: true } } }] }, orderFields: order }, expected, { limit: 2, order: 'asc' });
  const exFalse = await client.queryEntities({ query: { kind: 'component', [`metadata.annotations.${TECHDOCS}`]: { $exists: false } }, limit: 100 });
  assertSameEntitySet(exFalse.items, expected, '$exists: false');
});

await check('queryEntities predicate $hasPrefix (case-insensitive) with namespace', async () => {
  const prefix = services[0].metadata.name.slice(0, 4);
  const expected = dataset.filter(e => lc(e.metadata.name).startsWith(lc(prefix)));
  await checkWalk('$hasPrefix', { query: { 'metadata.name': { $hasPrefix: prefix.toUpperCase() } }, orderFields: order }, expected, { limit: 2, order: 'asc' });
  const other = [...multiNs].find(n => n !== 'default');
  const inOther = dataset.filter(e => ns(e) === other && e.kind.toLowerCase() !== 'group');
  await checkWalk('namespace $not kind', { query: { $all: [{ 'metadata.namespace': other }, { $not: { kind: 'group' } }] } }, inOther, { limit: 2 });
});

await check('queryEntities predicate on relations ($contains {type,targetRef})', async () => {
  const expected = dataset.filter(ownedBy(ownerRel));
  await checkWalk('relations $contains', { query: { relations: { $contains: { type: 'ownedBy', targetRef: ownerRel } } } }, expected, { limit: 2 });
});

await check('queryEntities predicate combined with a legacy filter', async () => {
  const expected = services.filter(e => ns(e) === 'default');
  await checkWalk('query+filter', { query: { 'spec.type': 'service' }, filter: { kind: 'component', 'metadata.namespace': 'default' } }, expected, { limit: 2 });
});

// A rejected request must carry Backstage's error body, which ResponseError parses:
// {"error":{"name","message"},"response":{"statusCode"}} served as application/json.
function assertBackstageError(status) {
  return err => {
    assert.equal(err.name, 'ResponseError', String(err));
    assert.equal(err.statusCode, status, `expected HTTP ${status}, got ${err.statusCode}: ${err.message}`);
    assert.equal(typeof err.body?.error?.name, 'string', `error body not in {error:{name,message},response:{statusCode}} form: ${JSON.stringify(err.body)}`);
    assert.equal(typeof err.body.error.message, 'string');
    assert.ok(!err.body.error.message.startsWith('Request failed with status'), `error body was not JSON in Backstage form: ${err.body.error.message}`);
    assert.equal(err.body.response?.statusCode, status);
    return true;
  };
}

await check('malformed predicate operand → 400 InputError with a Backstage error body', async () => {
  await assert.rejects(client.queryEntities({ query: { 'spec.type': { $in: 'service' } } }), assertBackstageError(400));
  await assert.rejects(client.getEntityFacets({ facets: ['kind'], query: { kind: { $hasPrefix: 7 } } }), assertBackstageError(400));
});

await check('unknown predicate operator → 400 InputError (filter-predicates schema rejects it)', async () => {
  await assert.rejects(client.queryEntities({ query: { kind: { $bogus: 1 } } }), assertBackstageError(400));
});

await check('queryEntities totalItems: exclude answers 0 and the same items', async () => {
  const res = await client.queryEntities({ filter: { kind: 'component' }, limit: 100, totalItems: 'exclude' });
  assert.equal(res.totalItems, 0);
  assertSameEntitySet(res.items, components, 'totalItems exclude');
});

await check('streamEntities yields every page of the query', async () => {
  const before = requests.length;
  const pages = [];
  for await (const page of client.streamEntities({ filter: { kind: 'component' }, pageSize: 2 })) pages.push(page);
  assertSameEntitySet(pages.flat(), components, 'streamEntities');
  assert.equal(pages.length, Math.ceil(components.length / 2), 'streamEntities: number of pages');
  for (const page of pages) assert.ok(page.length <= 2, 'streamEntities: a page is larger than pageSize');
  assert.ok(requests.slice(before).every(([m, u]) => u.startsWith(`${baseUrl}/entities/by-query`)));
});

// ---------------------------------------------------------------- getEntityFacets
await check('getEntityFacets spec.type and kind with a filter', async () => {
  const res = await client.getEntityFacets({ facets: ['spec.type', 'kind'], filter: { kind: 'component' } });
  assert.deepEqual(Object.keys(res.facets).sort(), ['kind', 'spec.type']);
  assert.deepEqual(sortFacet(res.facets['spec.type']), facetCounts(components, 'spec.type'));
  assert.deepEqual(sortFacet(res.facets.kind), facetCounts(components, 'kind'));
  const all = await client.getEntityFacets({ facets: ['kind', 'metadata.tags', 'metadata.namespace'] });
  assert.deepEqual(sortFacet(all.facets.kind), facetCounts(dataset, 'kind'));
  assert.deepEqual(sortFacet(all.facets['metadata.tags']), facetCounts(dataset, 'metadata.tags'));
  assert.deepEqual(sortFacet(all.facets['metadata.namespace']), facetCounts(dataset, 'metadata.namespace'));
});

await check('getEntityFacets with a predicate query', async () => {
  const match = dataset.filter(e => ['component', 'api'].includes(lc(e.kind)) && ns(e) === 'default');
  const res = await client.getEntityFacets({
    facets: ['spec.type', 'kind', 'metadata.tags'],
    query: { $all: [{ $any: [{ kind: 'component' }, { kind: 'api' }] }, { 'metadata.namespace': 'default' }] },
  });
  assert.deepEqual(sortFacet(res.facets['spec.type']), facetCounts(match, 'spec.type'));
  assert.deepEqual(sortFacet(res.facets.kind), facetCounts(match, 'kind'));
  assert.deepEqual(sortFacet(res.facets['metadata.tags']), facetCounts(match, 'metadata.tags'));
});

// ---------------------------------------------------------------- validateEntity
const newEntity = {
  apiVersion: 'backstage.io/v1alpha1',
  kind: 'Component',
  metadata: { name: 'contract-new-service', namespace: 'default', tags: ['python'] },
  spec: { type: 'service', lifecycle: 'production', owner: ownerRel },
};
await check('validateEntity: valid entity', async () => {
  assert.deepEqual(await client.validateEntity(newEntity, 'url:https://example.com/catalog-info.yaml'), { valid: true });
  assert.equal(await client.getEntityByRef('component:default/contract-new-service'), undefined, 'validation must not store the entity');
});

await check('validateEntity: bad metadata.name → valid false with errors', async () => {
  const bad = { ...newEntity, metadata: { ...newEntity.metadata, name: 'Not a valid name!' } };
  const res = await client.validateEntity(bad, 'url:https://example.com/catalog-info.yaml');
  assert.equal(res.valid, false);
  assert.ok(Array.isArray(res.errors) && res.errors.length > 0, `errors: ${JSON.stringify(res.errors)}`);
  for (const e of res.errors) assert.equal(typeof e.message, 'string', `error without message: ${JSON.stringify(e)}`);
});

// ---------------------------------------------------------------- refs in relations and ancestry
await check('relation targetRefs are lower-cased refs (as stringifyEntityRef makes them)', async () => {
  const all = dataset.flatMap(e => relations(e).map(r => [refOf(e), r]));
  expectNonEmpty(all, 'any relation');
  for (const [src, r] of all) {
    assert.equal(r.targetRef, r.targetRef.toLowerCase(), `${src} has relation ${r.type} → ${r.targetRef}, not lower-cased`);
  }
  const mixed = dataset.find(e => e.metadata.name !== e.metadata.name.toLowerCase());
  if (mixed) {
    const dependents = dataset.filter(e => relations(e).some(r => lc(r.type) === 'dependson' && lc(r.targetRef) === refOf(mixed)));
    expectNonEmpty(dependents, `a dependsOn relation to ${refOf(mixed)}`);
    const { items } = await client.getEntities({ filter: { 'relations.dependsOn': refOf(mixed) } });
    assertSameEntitySet(items, dependents, `relations.dependsOn=${refOf(mixed)}`);
  }
});

await check('getEntityAncestors: root entity, lower-cased rootEntityRef; 404 throws', async () => {
  const e = dataset.find(x => x.metadata.name !== x.metadata.name.toLowerCase()) ?? sample;
  const res = await client.getEntityAncestors({ entityRef: refOf(e) });
  assert.equal(res.rootEntityRef, refOf(e), 'rootEntityRef must be stringifyEntityRef(entity), all lower case');
  assert.ok(Array.isArray(res.items) && res.items.length >= 1);
  assert.deepEqual(res.items[0].entity, e);
  assert.ok(Array.isArray(res.items[0].parentEntityRefs));
  await assert.rejects(client.getEntityAncestors({ entityRef: MISSING }), assertBackstageError(404));
});

await check('refreshEntity: 200 (or 403 for a user without change permission)', async () => {
  try {
    await client.refreshEntity(refOf(sample));
  } catch (err) {
    // The client accepts exactly 200; a 204 would surface here as "Request failed with 204".
    assertBackstageError(403)(err);
  }
});

// ---------------------------------------------------------------- auth
await check('requests without a token are rejected', async () => {
  await assert.rejects(makeClient(null).getEntities(), err => {
    assert.ok([401, 403].includes(err.statusCode), `status ${err.statusCode}`);
    return true;
  });
});

// ---------------------------------------------------------------- removeEntityByUid (mutates: last)
await check('removeEntityByUid removes the entity', async () => {
  const victim = [...dataset].reverse().find(e => isKind('resource')(e)) ?? dataset.at(-1);
  assert.ok(victim.metadata.uid, 'documents must carry metadata.uid');
  await client.removeEntityByUid(victim.metadata.uid);
  assert.equal(await client.getEntityByRef(refOf(victim)), undefined);
  const { items } = await client.getEntitiesByRefs({ entityRefs: [refOf(victim)] });
  assert.deepEqual(items, [undefined]);
  const rest = await client.getEntities({ fields: ['kind', 'metadata.name', 'metadata.namespace'] });
  assert.equal(rest.items.length, dataset.length - 1);
  await assert.rejects(client.removeEntityByUid(victim.metadata.uid), err => {
    assert.equal(err.statusCode, 404, 'deleting an unknown uid should be 404');
    return true;
  });
});

// ---------------------------------------------------------------- locations (mutate: last)
const { LANTERN_LOCATION_TARGET: locationTarget, LANTERN_LOCATION_REFS: locationRefsJson } = process.env;
const locationRefs = locationRefsJson ? JSON.parse(locationRefsJson) : [];
async function locationCheck(name, fn) {
  if (!locationTarget) {
    if (!only || only.test(name)) console.log(`skip - ${name} (no LANTERN_LOCATION_TARGET)`);
    return;
  }
  await check(name, fn);
}
const MANAGED = 'backstage.io/managed-by-location';
const ORIGIN = 'backstage.io/managed-by-origin-location';
const ORPHAN = 'backstage.io/orphan';
let added; // the location addLocation stored
const locationRefOf = l => `${l.type}:${l.target}`; // stringifyLocationRef
function assertLocation(l, what) {
  assert.equal(typeof l?.id, 'string', `${what}: no id`);
  assert.equal(l.type, 'url', `${what}: type`);
  assert.equal(l.target, locationTarget, `${what}: target`);
  assert.match(l.entityRef, /^location:default\/generated-[0-9a-f]{40}$/, `${what}: entityRef`);
}

await locationCheck('location: addLocation dryRun lists the entities and stores nothing', async () => {
  expectNonEmpty(locationRefs, 'LANTERN_LOCATION_REFS');
  const res = await client.addLocation({ type: 'url', target: locationTarget, dryRun: true });
  assert.equal(res.exists, false);
  assert.equal(res.location.target, locationTarget);
  const refs = res.entities.map(refOf);
  assert.equal(refs[0], res.location.entityRef, 'the Location entity comes first');
  assert.deepEqual(refs.slice(1).sort(), [...locationRefs].sort());
  for (const e of res.entities) assert.equal(annotations(e)[MANAGED], `url:${locationTarget}`);
  for (const ref of locationRefs) assert.equal(await client.getEntityByRef(ref), undefined, `${ref} stored by a dry run`);
  const { items } = await client.getLocations();
  assert.ok(!items.some(l => l.target === locationTarget), 'a dry run stored the location');
});

await locationCheck('location: addLocation stores the location and its entities, managed by it', async () => {
  const res = await client.addLocation({ type: 'url', target: locationTarget });
  assertLocation(res.location, 'addLocation');
  assert.deepEqual(res.entities, []);
  added = res.location;
  for (const ref of locationRefs) {
    const e = await client.getEntityByRef(ref);
    assert.ok(e, `${ref} not stored`);
    assert.equal(annotations(e)[MANAGED], `url:${locationTarget}`);
    assert.equal(annotations(e)[ORIGIN], `url:${locationTarget}`);
  }
  const locationEntity = await client.getEntityByRef(added.entityRef);
  assert.deepEqual(locationEntity.spec, { type: 'url', target: locationTarget });
});

await locationCheck('location: adding it again is a 409, or a refresh with onConflict=refresh', async () => {
  await assert.rejects(client.addLocation({ type: 'url', target: locationTarget }), assertBackstageError(409));
  const res = await client.addLocation({ type: 'url', target: locationTarget, onConflict: 'refresh' });
  assert.deepEqual(res.location, added);
  assert.equal(res.exists, true);
});

await locationCheck('location: getLocations, getLocationById, getLocationByRef, getLocationByEntity', async () => {
  const { items } = await client.getLocations();
  assert.deepEqual(items.filter(l => l.id === added.id), [added]);
  assert.deepEqual(await client.getLocationById(added.id), added);
  assert.equal(await client.getLocationById('00000000-0000-4000-8000-000000000000'), undefined);
  assert.deepEqual(await client.getLocationByRef(locationRefOf(added)), added);
  assert.equal(await client.getLocationByRef('url:https://nowhere.example/catalog-info.yaml'), undefined);
  for (const ref of locationRefs) assert.deepEqual(await client.getLocationByEntity(ref), added, ref);
  assert.equal(await client.getLocationByEntity(refOf(sample)), undefined, 'an entity no location emits');
  assert.equal(await client.getLocationByEntity(MISSING), undefined);
});

await locationCheck('location: queryLocations (predicate, totalItems, cursor) and streamLocations', async () => {
  const all = (await client.getLocations()).items;
  const res = await client.queryLocations({ query: { target: locationTarget.toUpperCase() }, limit: 5 });
  assert.deepEqual(res.items, [added]);
  assert.equal(res.totalItems, 1);
  assert.equal(res.pageInfo.nextCursor, undefined);
  const none = await client.queryLocations({ query: { $not: { type: 'url' } } });
  assert.deepEqual([none.items, none.totalItems], [all.filter(l => l.type !== 'url'), all.filter(l => l.type !== 'url').length]);
  const first = await client.queryLocations({ limit: 1 });
  assert.equal(first.totalItems, all.length);
  const walked = [...first.items];
  let cursor = first.pageInfo.nextCursor;
  while (cursor) {
    const page = await client.queryLocations({ cursor });
    walked.push(...page.items);
    cursor = page.pageInfo.nextCursor;
  }
  assert.deepEqual(walked.map(l => l.id).sort(), all.map(l => l.id).sort());
  const streamed = [];
  for await (const page of client.streamLocations({ query: { type: 'url' } })) streamed.push(...page);
  assert.deepEqual(streamed.map(l => l.id).sort(), all.filter(l => l.type === 'url').map(l => l.id).sort());
  await assert.rejects(client.queryLocations({ query: { type: { $bogus: 1 } } }), assertBackstageError(400));
});

await locationCheck('location: getEntityAncestors leads to the Location entity', async () => {
  const res = await client.getEntityAncestors({ entityRef: locationRefs[0] });
  assert.equal(res.rootEntityRef, locationRefs[0]);
  assert.deepEqual(res.items.map(i => refOf(i.entity)), [locationRefs[0], added.entityRef]);
  assert.deepEqual(res.items[0].parentEntityRefs, [added.entityRef]);
  assert.deepEqual(res.items[1].parentEntityRefs, []);
});

await locationCheck('location: refreshEntity of an entity it emits, and analyzeLocation', async () => {
  await client.refreshEntity(locationRefs[0]);
  const e = await client.getEntityByRef(locationRefs[0]);
  assert.equal(e.status, undefined, `a good refresh leaves no status: ${JSON.stringify(e.status)}`);
  const analysis = await client.analyzeLocation({ location: { type: 'url', target: locationTarget } });
  assert.deepEqual(analysis.generateEntities, []);
  assert.deepEqual(analysis.existingEntityFiles.map(f => refOf(f.entity)).sort(), [...locationRefs].sort());
  for (const f of analysis.existingEntityFiles) {
    assert.deepEqual(f.location, { type: 'url', target: locationTarget });
    assert.equal(f.isRegistered, true);
  }
});

await locationCheck('location: updateLocation reads the target again', async () => {
  assert.deepEqual(await client.updateLocation(added.id, { type: 'url', target: locationTarget }), added);
  await assert.rejects(client.updateLocation('00000000-0000-4000-8000-000000000000', { type: 'url', target: locationTarget }), assertBackstageError(404));
});

await locationCheck('location: removeLocationById orphans its entities and removes its Location entity', async () => {
  await client.removeLocationById(added.id);
  assert.equal(await client.getLocationById(added.id), undefined);
  assert.equal(await client.getEntityByRef(added.entityRef), undefined);
  const { items } = await client.getEntities({ filter: { [`metadata.annotations.${ORPHAN}`]: 'true' } });
  assert.deepEqual(items.map(refOf).sort(), [...locationRefs].sort());
  await assert.rejects(client.removeLocationById(added.id), assertBackstageError(404));
});

console.log(`contract: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
