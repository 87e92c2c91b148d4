// Reference catalog server used to check contract.mjs itself. It is not Lantern.
//
// It serves the Backstage catalog HTTP API (the subset contract.mjs uses) from Backstage's own
// InMemoryCatalogClient (@backstage/catalog-client/testUtils). The package ships that client as the
// reference semantics for filters, predicates, fields, ordering, cursors and facets. If contract.mjs
// passes against this server, its expectations agree with Backstage's.
//
//   node reference_server.mjs <entities.json> <token>   → prints "listening <port>" and serves
//
// Only small gaps of the in-memory client are filled here: validation, 404 on an unknown uid,
// the HTTP error body shape, and auth.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { CATALOG_FILTER_EXISTS } from '@backstage/catalog-client';
import { InMemoryCatalogClient } from '@backstage/catalog-client/testUtils';

const [file, token] = process.argv.slice(2);
const entities = JSON.parse(readFileSync(file, 'utf8'));
const catalog = new InMemoryCatalogClient({ entities });
const PREFIX = '/api/catalog';

class HttpError extends Error {
  constructor(status, name, message) { super(message); this.status = status; this.name = name; }
}
function parseFilters(values) {
  return values.map(v => {
    const rec = {};
    for (const part of v.split(',')) {
      const i = part.indexOf('=');
      const [k, val] = i === -1 ? [part.trim(), CATALOG_FILTER_EXISTS] : [part.slice(0, i).trim(), part.slice(i + 1).trim()];
      rec[k] = k in rec ? [rec[k]].flat().concat(val) : val;
    }
    return rec;
  });
}
const fieldsOf = q => (q.getAll('fields').flatMap(f => f.split(',')).filter(Boolean) || undefined);
const orNone = a => (a && a.length ? a : undefined);
const isCursor = c => { try { JSON.parse(atob(c)); return true; } catch { return false; } };
// The wire-level schema check that parseFilterPredicate (@backstage/filter-predicates) applies:
// anything outside the grammar is an InputError (400).
function assertPredicate(p) {
  const bad = why => { throw new HttpError(400, 'InputError', `Invalid filter predicate: ${why}`); };
  const isPrim = v => ['string', 'number', 'boolean'].includes(typeof v);
  const isObj = v => v !== null && typeof v === 'object' && !Array.isArray(v);
  const predicate = (x, allowPrimitive) => {
    if (allowPrimitive && isPrim(x)) return;
    if (!isObj(x)) bad(`expected an object, got ${JSON.stringify(x)}`);
    const keys = Object.keys(x);
    for (const op of ['$all', '$any', '$not']) {
      if (!(op in x)) continue;
      if (keys.length !== 1) bad(`${op} must be the only key`);
      if (op === '$not') return predicate(x.$not, allowPrimitive);
      if (!Array.isArray(x[op])) bad(`${op} expects an array`);
      return x[op].forEach(y => predicate(y, allowPrimitive));
    }
    for (const [k, v] of Object.entries(x)) {
      if (k.startsWith('$')) bad(`unknown operator ${k}`);
      if (isPrim(v)) continue;
      if (!isObj(v) || Object.keys(v).length !== 1) bad(`bad value for ${k}`);
      const [[op, operand]] = Object.entries(v);
      if (op === '$exists' && typeof operand === 'boolean') continue;
      if (op === '$in' && Array.isArray(operand) && operand.every(isPrim)) continue;
      if (op === '$hasPrefix' && typeof operand === 'string') continue;
      if (op === '$contains') { predicate(operand, true); continue; }
      bad(`bad value for ${k}: ${JSON.stringify(v)}`);
    }
  };
  predicate(p, false);
}
function validate(entity) {
  const errors = [];
  const name = entity?.metadata?.name;
  if (typeof name !== 'string' || name.length > 63 || !/^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/.test(name)) {
    errors.push({ name: 'TypeError', message: `"metadata.name" is not valid; expected a string that is sequences of [a-zA-Z0-9] separated by any of [-_.], at most 63 characters in total but found "${name}"` });
  }
  return errors;
}
async function readJson(req) {
  let s = '';
  for await (const c of req) s += c;
  return s ? JSON.parse(s) : {};
}

async function handle(req, url) {
  const p = url.pathname.slice(PREFIX.length);
  const q = url.searchParams;
  const m = req.method;
  let r;
  if (m === 'GET' && p === '/entities') {
    const order = orNone(q.getAll('order').map(o => { const [ord, ...f] = o.split(':'); return { order: ord, field: f.join(':') }; }));
    const res = await catalog.getEntities({ filter: orNone(parseFilters(q.getAll('filter'))), fields: orNone(fieldsOf(q)), order, limit: q.has('limit') ? Number(q.get('limit')) : undefined, offset: q.has('offset') ? Number(q.get('offset')) : undefined });
    return [200, res.items];
  }
  if (m === 'POST' && p === '/entities/by-refs') {
    const body = await readJson(req);
    if (body.query) assertPredicate(body.query);
    const refs = body.entityRefs.map(x => x.toLowerCase());
    r = await catalog.getEntitiesByRefs({ entityRefs: refs, fields: orNone(body.fields), filter: orNone(parseFilters(q.getAll('filter'))), query: body.query });
    return [200, { items: r.items.map(i => i ?? null) }];
  }
  if (p === '/entities/by-query' && (m === 'GET' || m === 'POST')) {
    let request;
    if (m === 'GET') {
      const cursor = q.get('cursor');
      if (cursor) {
        if (!isCursor(cursor)) throw new HttpError(400, 'InputError', 'Malformed cursor');
        request = { cursor, limit: q.has('limit') ? Number(q.get('limit')) : undefined, fields: orNone(fieldsOf(q)) };
      } else {
        const orderFields = orNone(q.getAll('orderField').map(o => { const [field, order] = o.split(','); return { field, order }; }));
        request = { filter: orNone(parseFilters(q.getAll('filter'))), fields: orNone(fieldsOf(q)), orderFields, limit: q.has('limit') ? Number(q.get('limit')) : 20, offset: q.has('offset') ? Number(q.get('offset')) : undefined };
      }
    } else {
      const b = await readJson(req);
      if (b.cursor) request = { cursor: b.cursor, limit: b.limit, fields: orNone(b.fields) };
      else {
        if (b.query) assertPredicate(b.query);
        request = { query: b.query, fields: orNone(b.fields), orderFields: orNone(b.orderBy), limit: b.limit ?? 20, offset: b.offset, totalItems: b.totalItems };
      }
    }
    if (request.cursor && request.limit === undefined) request.limit = 20;
    r = await catalog.queryEntities(request);
    // Backstage's backend counts nothing with totalItems=exclude (the in-memory client always does).
    const exclude = (m === 'GET' ? q.get('totalItems') : request.totalItems) === 'exclude';
    return [200, { items: r.items, totalItems: exclude ? 0 : r.totalItems, pageInfo: r.pageInfo }];
  }
  const byName = p.match(/^\/entities\/by-name\/([^/]+)\/([^/]+)\/([^/]+)$/);
  if (m === 'GET' && byName) {
    const [kind, namespace, name] = byName.slice(1).map(decodeURIComponent);
    const e = await catalog.getEntityByRef(`${kind}:${namespace}/${name}`.toLowerCase());
    if (!e) throw new HttpError(404, 'NotFoundError', `No entity named '${name}' found, with kind '${kind}' in namespace '${namespace}'`);
    return [200, e];
  }
  const ancestry = p.match(/^\/entities\/by-name\/([^/]+)\/([^/]+)\/([^/]+)\/ancestry$/);
  if (m === 'GET' && ancestry) {
    const [kind, namespace, name] = ancestry.slice(1).map(decodeURIComponent);
    return [200, await catalog.getEntityAncestors({ entityRef: `${kind}:${namespace}/${name}`.toLowerCase() })];
  }
  if (m === 'POST' && p === '/refresh') {
    const b = await readJson(req);
    if (!(await catalog.getEntityByRef(b.entityRef))) throw new HttpError(404, 'NotFoundError', `No entity ${b.entityRef}`);
    return [200, null];
  }
  const byUid = p.match(/^\/entities\/by-uid\/([^/]+)$/);
  if (m === 'DELETE' && byUid) {
    const uid = decodeURIComponent(byUid[1]);
    const all = await catalog.getEntities({ filter: { 'metadata.uid': uid } });
    if (!all.items.length) throw new HttpError(404, 'NotFoundError', `No entity with uid ${uid}`);
    await catalog.removeEntityByUid(uid);
    return [204, null];
  }
  if (p === '/entity-facets' && (m === 'GET' || m === 'POST')) {
    if (m === 'GET') return [200, await catalog.getEntityFacets({ facets: q.getAll('facet'), filter: orNone(parseFilters(q.getAll('filter'))) })];
    const b = await readJson(req);
    if (b.query) assertPredicate(b.query);
    return [200, await catalog.getEntityFacets({ facets: b.facets, query: b.query })];
  }
  if (m === 'POST' && p === '/validate-entity') {
    const b = await readJson(req);
    const errors = validate(b.entity);
    return errors.length ? [400, { errors }] : [200, null];
  }
  throw new HttpError(404, 'NotFoundError', `No route ${m} ${p}`);
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const send = (status, body) => {
    if (body === null) { res.writeHead(status); res.end(); return; }
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
  };
  try {
    if (req.headers.authorization !== `Bearer ${token}`) throw new HttpError(401, 'AuthenticationError', 'Missing or bad token');
    if (!url.pathname.startsWith(PREFIX)) throw new HttpError(404, 'NotFoundError', 'Not found');
    const [status, body] = await handle(req, url);
    send(status, body);
  } catch (e) {
    const status = e.status ?? (e.name === 'InputError' ? 400 : e.name === 'NotFoundError' ? 404 : 500);
    send(status, { error: { name: e.name, message: e.message }, request: { method: req.method, url: req.url }, response: { statusCode: status } });
  }
});
server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`));
