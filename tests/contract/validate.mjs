#!/usr/bin/env node
// Contract checks with a real JSON Schema validator (ajv, draft 2020-12).
//
//   node validate.mjs check-docs          the contracts themselves: every schema in docs/schemas compiles in
//                                         strict mode and its examples validate; every $ref in
//                                         docs/asyncapi.yaml and docs/openapi.yaml resolves; every example
//                                         in them validates against its schema; the decoder's seed corpus
//                                         (tests/fuzz/corpus), when present, is judged as the decoder judges it
//   node validate.mjs events <file.jsonl> captured MQTT traffic, one {"topic":...,"payload":...} per line
//   node validate.mjs http <file.jsonl>   captured HTTP bodies, one {"schema":"<name>","body":...} per line
//
// A payload or body given as a JSON string is the raw text as it went over the wire: it is parsed here
// as the services' decoder (jansson) parses it, refusing duplicate keys and treating 1.0 as a real
// number, not an integer. Anything else is taken as the already parsed value.
//
// The topic of an event picks its schema through docs/asyncapi.yaml: the channel whose address matches
// the topic, and that channel's message payload. Exit status: 0 when everything is valid, 1 when
// anything is not (or a topic has no channel, or the file is empty), 2 on a usage or setup error.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const DOCS = path.join(ROOT, 'docs');
const SCHEMAS = path.join(DOCS, 'schemas');
const ASYNCAPI = path.join(DOCS, 'asyncapi.yaml');
const OPENAPI = path.join(DOCS, 'openapi.yaml');
const CORPUS = path.join(ROOT, 'tests', 'fuzz', 'corpus');
const ID_BASE = 'https://pizza.example/schemas/';
const DIALECT = 'https://json-schema.org/draft/2020-12/schema';
const SCHEMA_FORMAT = 'application/schema+json;version=draft-2020-12';
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
// The topic parameters that name a payload field: a status on pizza/users/alice/orders/X/status must be
// alice's order X.
const PARAM_FIELDS = { userId: 'user_id', orderId: 'order_id' };

class SetupError extends Error {}

// ---- strict JSON, as the decoder reads it ---------------------------------------------------------

// Parses text like jansson with JSON_REJECT_DUPLICATES: a duplicate key is an error. A number written
// with a fraction or an exponent is a real for jansson even when it is whole (1.0, 1e2), and a real is
// not an integer; such numbers are nudged off the integers here so that "type": "integer" refuses them
// too.
function parseStrict(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
  const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
  const token = (re) => {
    re.lastIndex = i;
    const m = re.exec(text);
    if (m === null) return null;
    i = re.lastIndex;
    return m;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      const obj = {};
      const seen = new Set();
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        const k = token(STRING);
        if (k === null) fail('expected a string key');
        const key = JSON.parse(k[0]);
        if (seen.has(key)) fail(`duplicate key ${k[0]}`);
        seen.add(key);
        ws();
        if (text[i++] !== ':') fail("expected ':'");
        Object.defineProperty(obj, key, { value: value(), enumerable: true, writable: true, configurable: true });
        ws();
        const sep = text[i++];
        if (sep === '}') return obj;
        if (sep !== ',') fail("expected ',' or '}'");
      }
    }
    if (c === '[') {
      const arr = [];
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        const sep = text[i++];
        if (sep === ']') return arr;
        if (sep !== ',') fail("expected ',' or ']'");
      }
    }
    if (c === '"') return JSON.parse(token(STRING)?.[0] ?? fail('bad string'));
    for (const [word, v] of [['true', true], ['false', false], ['null', null]])
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    const m = token(NUMBER);
    if (m === null) fail('expected a JSON value');
    let n = Number(m[0]);
    if ((m[1] !== undefined || m[2] !== undefined) && Number.isInteger(n))
      n += Math.max(Math.abs(n) * Number.EPSILON, Number.MIN_VALUE);
    return n;
  };
  const v = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

// ---- loading ---------------------------------------------------------------------------------------

const fileCache = new Map();

function loadDoc(file) {
  if (fileCache.has(file)) return fileCache.get(file);
  if (!fs.existsSync(file)) throw new SetupError(`${rel(file)}: no such file`);
  const text = fs.readFileSync(file, 'utf8');
  let doc;
  try {
    doc = /\.ya?ml$/.test(file) ? YAML.parse(text, { uniqueKeys: true, strict: true }) : parseStrict(text);
  } catch (e) {
    throw new SetupError(`${rel(file)}: ${e.message}`);
  }
  fileCache.set(file, doc);
  return doc;
}

function rel(file) {
  return path.relative(ROOT, file) || file;
}

function pointerGet(doc, pointer) {
  if (pointer === '' || pointer === '/') return pointer === '' ? doc : undefined;
  if (!pointer.startsWith('/')) return undefined;
  let cur = doc;
  for (const raw of pointer.slice(1).split('/')) {
    const part = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object' || !Object.prototype.hasOwnProperty.call(cur, part)) return undefined;
    cur = cur[part];
  }
  return cur;
}

// {file, pointer, value} for ref as written in baseFile; value is undefined when it does not resolve.
function resolveRef(baseFile, ref) {
  const hash = ref.indexOf('#');
  const filePart = hash < 0 ? ref : ref.slice(0, hash);
  const pointer = hash < 0 ? '' : ref.slice(hash + 1);
  if (/^[a-z][a-z0-9+.-]*:/i.test(filePart)) return { file: filePart, pointer, value: undefined, remote: true };
  const file = filePart === '' ? baseFile : path.resolve(path.dirname(baseFile), filePart);
  if (!fs.existsSync(file)) return { file, pointer, value: undefined };
  return { file, pointer, value: pointerGet(loadDoc(file), pointer) };
}

// Every {"$ref": ...} in node (objects and arrays, recursively), with its JSON pointer.
function* refsIn(node, at = '') {
  if (Array.isArray(node)) {
    for (let k = 0; k < node.length; k++) yield* refsIn(node[k], `${at}/${k}`);
  } else if (node !== null && typeof node === 'object') {
    if (typeof node.$ref === 'string') yield { ref: node.$ref, at };
    for (const [k, v] of Object.entries(node)) yield* refsIn(v, `${at}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`);
  }
}

// ---- the schemas -----------------------------------------------------------------------------------

function loadSchemas() {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats(ajv);
  const byName = new Map(); // title, file name and file name without .json -> {file, id, schema}
  const all = [];
  if (!fs.existsSync(SCHEMAS)) throw new SetupError(`${rel(SCHEMAS)}: no such folder`);
  for (const name of fs.readdirSync(SCHEMAS).filter((n) => n.endsWith('.json')).sort()) {
    const file = path.join(SCHEMAS, name);
    const schema = loadDoc(file);
    const entry = { file, name, id: ID_BASE + name, schema };
    if (schema.$schema !== DIALECT) throw new SetupError(`${rel(file)}: "$schema" must be "${DIALECT}"`);
    if (schema.$id !== entry.id) throw new SetupError(`${rel(file)}: "$id" must be "${entry.id}"`);
    ajv.addSchema(schema);
    all.push(entry);
    for (const key of [schema.title, name, name.replace(/\.json$/, '')]) if (key) byName.set(key, entry);
  }
  return { ajv, byName, all };
}

// Compiles every schema (strict mode: unknown keywords, formats and type mix-ups are errors).
function compileAll(S, problems) {
  for (const e of S.all) {
    try {
      e.validate = S.ajv.getSchema(e.id);
    } catch (err) {
      problems.push(`${rel(e.file)}: does not compile: ${err.message}`);
    }
  }
}

function errorsText(errors, dataVar) {
  return (errors ?? [])
    .filter((e) => e.keyword !== 'if') // "must match then schema" only repeats the real error
    .map((e) => `${dataVar}${e.instancePath} ${e.message}${e.params?.allowedValues ? ` (${e.params.allowedValues.join(', ')})` : ''}${e.params?.allowedValue !== undefined ? ` (${JSON.stringify(e.params.allowedValue)})` : ''}`)
    .filter((t, k, arr) => arr.indexOf(t) === k)
    .join('; ');
}

// A validator for a schema object found in a YAML document: a $ref to a file in docs/schemas (with an
// optional fragment) is looked up by its $id; anything else is compiled on its own, its file $refs turned
// into $ids and its local ones (#/components/...) inlined.
const compiledInline = new Map();

function validatorFor(S, schemaObj, baseFile) {
  const toId = (ref, from) => {
    const r = resolveRef(from, ref);
    if (r.remote || r.value === undefined) throw new Error(`$ref ${ref} does not resolve`);
    if (path.dirname(r.file) === SCHEMAS) return ID_BASE + path.basename(r.file) + (r.pointer ? `#${r.pointer}` : '');
    return null;
  };
  if (schemaObj && typeof schemaObj.$ref === 'string' && Object.keys(schemaObj).every((k) => ['$ref', 'description', 'summary'].includes(k))) {
    const id = toId(schemaObj.$ref, baseFile);
    if (id !== null) return S.ajv.getSchema(id);
  }
  const seen = new Set();
  const rewrite = (node, from) => {
    if (Array.isArray(node)) return node.map((n) => rewrite(n, from));
    if (node === null || typeof node !== 'object') return node;
    if (typeof node.$ref === 'string') {
      const id = toId(node.$ref, from);
      if (id !== null) return { ...rewrite({ ...node, $ref: undefined }, from), $ref: id };
      const r = resolveRef(from, node.$ref);
      const key = `${r.file}#${r.pointer}`;
      if (seen.has(key)) throw new Error(`recursive $ref ${node.$ref}`);
      seen.add(key);
      const out = rewrite(r.value, r.file);
      seen.delete(key);
      return out;
    }
    const out = {};
    for (const [k, v] of Object.entries(node)) if (v !== undefined) out[k] = rewrite(v, from);
    return out;
  };
  const schema = rewrite(schemaObj, baseFile);
  const key = JSON.stringify(schema);
  if (!compiledInline.has(key)) compiledInline.set(key, S.ajv.compile(schema));
  return compiledInline.get(key);
}

// ---- the AsyncAPI document: topics to schemas ------------------------------------------------------

function deref(doc, file, node) {
  for (let depth = 0; node && typeof node.$ref === 'string'; depth++) {
    if (depth > 20) throw new SetupError(`${rel(file)}: $ref loop at ${node.$ref}`);
    const r = resolveRef(file, node.$ref);
    if (r.value === undefined) throw new SetupError(`${rel(file)}: $ref ${node.$ref} does not resolve`);
    node = r.value;
    file = r.file;
  }
  return { node, file };
}

// [{channel, re, params: [names], messages: [{name, validate, schemaName, maxBytes}]}] from asyncapi.yaml.
function topicMap(S) {
  const doc = loadDoc(ASYNCAPI);
  const out = [];
  for (const [name, ch0] of Object.entries(doc.channels ?? {})) {
    const { node: ch, file } = deref(doc, ASYNCAPI, ch0);
    if (typeof ch.address !== 'string') throw new SetupError(`${rel(ASYNCAPI)}: channel ${name} has no address`);
    const params = [];
    const re = new RegExp(
      `^${ch.address
        .split(/(\{[^}]+\})/)
        .map((part) => {
          const m = /^\{([^}]+)\}$/.exec(part);
          if (m) {
            params.push(m[1]);
            return '([^/+#]+)';
          }
          return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        })
        .join('')}$`,
    );
    const messages = [];
    for (const [mname, m0] of Object.entries(ch.messages ?? {})) {
      const { node: msg, file: mfile } = deref(doc, file, m0);
      const payload = msg.payload?.schema ?? msg.payload;
      if (!payload) throw new SetupError(`${rel(ASYNCAPI)}: message ${mname} has no payload`);
      const validate = validatorFor(S, payload, mfile);
      const target = payload.$ref ? resolveRef(mfile, payload.$ref) : null;
      const schemaName = target?.value?.title ?? mname;
      messages.push({ name: mname, validate, schemaName, maxBytes: msg['x-max-payload-bytes'] });
    }
    out.push({ channel: name, address: ch.address, re, params, messages });
  }
  return out;
}

// Judges one MQTT message: {schema: the payload schema's title, error: null when valid, else the reason}.
function checkEvent(topics, topic, payload) {
  const ch = topics.find((c) => c.re.test(topic));
  if (!ch) return { schema: null, error: `no channel in docs/asyncapi.yaml has an address matching this topic` };
  const values = ch.re.exec(topic).slice(1);
  let data = payload;
  const msg = ch.messages[0];
  if (ch.messages.length !== 1) return { schema: null, error: `channel ${ch.channel} has ${ch.messages.length} messages; expected one` };
  if (typeof payload === 'string') {
    const bytes = Buffer.byteLength(payload, 'utf8');
    if (msg.maxBytes !== undefined && bytes > msg.maxBytes)
      return { schema: msg.schemaName, error: `payload of ${bytes} bytes is over the ${msg.maxBytes} byte limit` };
    try {
      data = parseStrict(payload);
    } catch (e) {
      return { schema: msg.schemaName, error: `payload is not valid JSON: ${e.message}` };
    }
  }
  const errs = [];
  if (!msg.validate(data)) errs.push(errorsText(msg.validate.errors, 'payload'));
  ch.params.forEach((p, k) => {
    const field = PARAM_FIELDS[p];
    if (field && !ID_RE.test(values[k])) errs.push(`topic level {${p}} '${values[k]}' is not a valid id`);
    if (field && data && typeof data === 'object' && !Array.isArray(data) && data[field] !== undefined && data[field] !== values[k])
      errs.push(`payload/${field} '${data[field]}' is not the topic's {${p}} '${values[k]}'`);
  });
  return errs.length ? { schema: msg.schemaName, error: errs.join('; ') } : { schema: msg.schemaName, error: null };
}

// ---- JSON lines ------------------------------------------------------------------------------------

function readJsonl(file) {
  if (!fs.existsSync(file)) throw new SetupError(`${file}: no such file`);
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .map((text, k) => ({ line: k + 1, text }))
    .filter((l) => l.text.trim() !== '');
}

function cmdEvents(file) {
  const S = loadSchemas();
  compileAllOrThrow(S);
  const topics = topicMap(S);
  let ok = 0;
  let bad = 0;
  const lines = readJsonl(file);
  for (const { line, text } of lines) {
    let rec;
    try {
      rec = JSON.parse(text);
    } catch (e) {
      console.log(`${file}:${line}: not a JSON line: ${e.message}`);
      bad++;
      continue;
    }
    if (typeof rec?.topic !== 'string' || !('payload' in rec)) {
      console.log(`${file}:${line}: expected {"topic": "...", "payload": ...}`);
      bad++;
      continue;
    }
    const r = checkEvent(topics, rec.topic, rec.payload);
    if (r.error === null) ok++;
    else {
      bad++;
      console.log(`${file}:${line}: ${rec.topic}${r.schema ? ` (${r.schema})` : ''}: ${r.error}`);
    }
  }
  if (lines.length === 0) console.log(`${file}: no events`);
  console.log(`contract: ${ok} events valid, ${bad} invalid`);
  return bad === 0 && lines.length > 0 ? 0 : 1;
}

function cmdHttp(file) {
  const S = loadSchemas();
  compileAllOrThrow(S);
  let ok = 0;
  let bad = 0;
  const lines = readJsonl(file);
  for (const { line, text } of lines) {
    let rec;
    try {
      rec = JSON.parse(text);
    } catch (e) {
      console.log(`${file}:${line}: not a JSON line: ${e.message}`);
      bad++;
      continue;
    }
    const entry = S.byName.get(rec?.schema);
    if (!entry || entry.name === 'common.json' || !('body' in rec)) {
      console.log(`${file}:${line}: expected {"schema": "<one of ${[...new Set(S.all.filter((e) => e.name !== 'common.json').map((e) => e.schema.title))].join(', ')}>", "body": ...}; got schema ${JSON.stringify(rec?.schema)}`);
      bad++;
      continue;
    }
    let body = rec.body;
    if (typeof body === 'string') {
      try {
        body = parseStrict(body);
      } catch (e) {
        console.log(`${file}:${line}: ${entry.schema.title}: body is not valid JSON: ${e.message}`);
        bad++;
        continue;
      }
    }
    if (entry.validate(body)) ok++;
    else {
      bad++;
      console.log(`${file}:${line}: ${entry.schema.title}: ${errorsText(entry.validate.errors, 'body')}`);
    }
  }
  if (lines.length === 0) console.log(`${file}: no bodies`);
  console.log(`contract: ${ok} bodies valid, ${bad} invalid`);
  return bad === 0 && lines.length > 0 ? 0 : 1;
}

function compileAllOrThrow(S) {
  const problems = [];
  compileAll(S, problems);
  if (problems.length) throw new SetupError(problems.join('\n'));
}

// ---- check-docs ------------------------------------------------------------------------------------

function checkSchemaExamples(S, problems) {
  let n = 0;
  for (const e of S.all) {
    if (!e.validate) continue;
    const isLibrary = e.schema.$defs && !e.schema.type && !e.schema.oneOf && !e.schema.anyOf && !e.schema.$ref;
    if (!isLibrary && !(Array.isArray(e.schema.examples) && e.schema.examples.length > 0))
      problems.push(`${rel(e.file)}: needs an "examples" array with at least one example`);
    (e.schema.examples ?? []).forEach((ex, k) => {
      n++;
      if (!e.validate(ex)) problems.push(`${rel(e.file)}: examples[${k}] is not valid: ${errorsText(e.validate.errors, 'example')}`);
    });
    for (const [dname, def] of Object.entries(e.schema.$defs ?? {})) {
      if (isLibrary && !(Array.isArray(def.examples) && def.examples.length > 0))
        problems.push(`${rel(e.file)}: $defs/${dname} needs an "examples" array`);
      let v;
      try {
        v = S.ajv.getSchema(`${e.id}#/$defs/${dname}`);
      } catch (err) {
        problems.push(`${rel(e.file)}: $defs/${dname} does not compile: ${err.message}`);
        continue;
      }
      (def.examples ?? []).forEach((ex, k) => {
        n++;
        if (!v(ex)) problems.push(`${rel(e.file)}: $defs/${dname}/examples[${k}] is not valid: ${errorsText(v.errors, 'example')}`);
      });
    }
  }
  return n;
}

// Every $ref in the document (and, through them, in the files they lead to) resolves.
function checkRefs(docFile, problems) {
  const done = new Set();
  const queue = [docFile];
  let n = 0;
  while (queue.length) {
    const file = queue.shift();
    if (done.has(file)) continue;
    done.add(file);
    for (const { ref, at } of refsIn(loadDoc(file))) {
      n++;
      const r = resolveRef(file, ref);
      if (r.remote) problems.push(`${rel(file)}#${at}: $ref ${ref} points outside this repository`);
      else if (!fs.existsSync(r.file)) problems.push(`${rel(file)}#${at}: $ref ${ref}: no file ${rel(r.file)}`);
      else if (r.value === undefined) problems.push(`${rel(file)}#${at}: $ref ${ref}: no ${r.pointer} in ${rel(r.file)}`);
      else if (r.file !== file) queue.push(r.file);
    }
  }
  return n;
}

function checkAsyncapi(S, problems) {
  const doc = loadDoc(ASYNCAPI);
  let n = 0;
  if (doc.asyncapi !== '3.0.0') problems.push(`${rel(ASYNCAPI)}: asyncapi must be 3.0.0`);
  // channels: parameters exactly the {names} of the address
  for (const [name, ch0] of Object.entries(doc.channels ?? {})) {
    const { node: ch } = deref(doc, ASYNCAPI, ch0);
    const inAddress = [...(ch.address ?? '').matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
    const declared = Object.keys(ch.parameters ?? {}).sort();
    if (JSON.stringify(inAddress) !== JSON.stringify(declared))
      problems.push(`${rel(ASYNCAPI)}: channel ${name}: address parameters [${inAddress}] but parameters [${declared}]`);
  }
  // operations: their messages are their channel's
  for (const [name, op] of Object.entries(doc.operations ?? {})) {
    if (!['send', 'receive'].includes(op.action)) problems.push(`${rel(ASYNCAPI)}: operation ${name}: action must be send or receive`);
    const chRef = op.channel?.$ref;
    if (!chRef?.startsWith('#/channels/')) {
      problems.push(`${rel(ASYNCAPI)}: operation ${name}: channel must be a $ref to #/channels/...`);
      continue;
    }
    for (const m of [...(op.messages ?? []), ...(op.reply?.messages ?? [])]) {
      const ok = m.$ref?.startsWith(`${chRef}/messages/`) || (op.reply?.channel?.$ref && m.$ref?.startsWith(`${op.reply.channel.$ref}/messages/`));
      if (!ok) problems.push(`${rel(ASYNCAPI)}: operation ${name}: message ${m.$ref} is not one of its channel's messages`);
    }
    const b = op.bindings?.mqtt;
    if (!b || ![0, 1, 2].includes(b.qos) || typeof b.retain !== 'boolean')
      problems.push(`${rel(ASYNCAPI)}: operation ${name}: needs bindings.mqtt with qos and retain`);
  }
  // messages: a JSON Schema 2020-12 payload, and every example valid against it
  for (const [name, m0] of Object.entries(doc.components?.messages ?? {})) {
    const { node: msg, file } = deref(doc, ASYNCAPI, m0);
    if (msg.payload?.schemaFormat !== SCHEMA_FORMAT) problems.push(`${rel(ASYNCAPI)}: message ${name}: payload.schemaFormat must be ${SCHEMA_FORMAT}`);
    let v;
    try {
      v = validatorFor(S, msg.payload?.schema ?? msg.payload, file);
    } catch (e) {
      problems.push(`${rel(ASYNCAPI)}: message ${name}: ${e.message}`);
      continue;
    }
    if (!Array.isArray(msg.examples) || msg.examples.length === 0) problems.push(`${rel(ASYNCAPI)}: message ${name}: needs examples`);
    (msg.examples ?? []).forEach((ex, k) => {
      n++;
      if (!('payload' in ex)) problems.push(`${rel(ASYNCAPI)}: message ${name}: examples[${k}] has no payload`);
      else if (!v(ex.payload)) problems.push(`${rel(ASYNCAPI)}: message ${name}: examples[${k}] (${ex.name ?? ''}) is not valid: ${errorsText(v.errors, 'payload')}`);
    });
  }
  return n;
}

function mediaExamples(doc, file, media) {
  const out = [];
  if (media.example !== undefined) out.push({ name: 'example', value: media.example });
  for (const [k, ex0] of Object.entries(media.examples ?? {})) {
    const { node: ex } = deref(doc, file, ex0);
    out.push({ name: k, value: ex.value });
  }
  return out;
}

function checkOpenapi(S, problems) {
  const doc = loadDoc(OPENAPI);
  let n = 0;
  if (!/^3\.1\.\d+$/.test(doc.openapi ?? '')) problems.push(`${rel(OPENAPI)}: openapi must be 3.1.x`);
  const check = (where, schemaObj, examples) => {
    let v;
    try {
      v = validatorFor(S, schemaObj, OPENAPI);
    } catch (e) {
      problems.push(`${rel(OPENAPI)}: ${where}: ${e.message}`);
      return;
    }
    for (const ex of examples) {
      n++;
      if (!v(ex.value)) problems.push(`${rel(OPENAPI)}: ${where} example ${ex.name} is not valid: ${errorsText(v.errors, 'example')}`);
    }
  };
  const pathItem = (p, item0, isCallback) => {
    const { node: item } = deref(doc, OPENAPI, item0);
    const templ = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
    for (const method of ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']) {
      const op = item[method];
      if (!op) continue;
      const where = `${isCallback ? 'callback ' : ''}${method.toUpperCase()} ${p}`;
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((x) => deref(doc, OPENAPI, x).node);
      const pathParams = params.filter((x) => x.in === 'path').map((x) => x.name).sort();
      if (!isCallback && JSON.stringify(pathParams) !== JSON.stringify(templ))
        problems.push(`${rel(OPENAPI)}: ${where}: path parameters [${pathParams}] but template [${templ}]`);
      for (const prm of params) {
        const exs = [];
        if (prm.example !== undefined) exs.push({ name: 'example', value: prm.example });
        for (const [k, ex0] of Object.entries(prm.examples ?? {})) exs.push({ name: k, value: deref(doc, OPENAPI, ex0).node.value });
        if (prm.schema) check(`${where} parameter ${prm.name}`, prm.schema, exs);
      }
      if (op.requestBody) {
        const { node: rb } = deref(doc, OPENAPI, op.requestBody);
        for (const [mt, media] of Object.entries(rb.content ?? {})) check(`${where} request ${mt}`, media.schema, mediaExamples(doc, OPENAPI, media));
      }
      if (!op.responses || Object.keys(op.responses).length === 0) problems.push(`${rel(OPENAPI)}: ${where}: no responses`);
      for (const [code, r0] of Object.entries(op.responses ?? {})) {
        const { node: resp } = deref(doc, OPENAPI, r0);
        for (const [mt, media] of Object.entries(resp.content ?? {})) check(`${where} ${code} ${mt}`, media.schema, mediaExamples(doc, OPENAPI, media));
      }
      for (const cb0 of Object.values(op.callbacks ?? {})) {
        const { node: cb } = deref(doc, OPENAPI, cb0);
        for (const [expr, cbItem] of Object.entries(cb)) pathItem(expr, cbItem, true);
      }
    }
  };
  for (const [p, item0] of Object.entries(doc.paths ?? {})) pathItem(p, item0, false);
  return n;
}

// The decoder's seed corpus (tests/fuzz/corpus), when there: every file named invalid_* (or not_*) must be
// refused, every other one accepted, as backend/common/event.c and intake.c judge them.
function checkCorpus(S, topics, problems) {
  let n = 0;
  const byType = { OrderPlaced: 'pizza/orders/placed', OrderReady: 'pizza/orders/ready', CallbackDelivery: 'pizza/orders/callbacks' };
  const ev = path.join(CORPUS, 'fuzz_event');
  if (fs.existsSync(ev))
    for (const name of fs.readdirSync(ev).sort()) {
      const text = fs.readFileSync(path.join(ev, name), 'utf8');
      const type = /"type"\s*:\s*"([A-Za-z]+)"/.exec(text)?.[1];
      let topic = byType[type];
      if (type === 'OrderStatus' || type === 'PickupAlert') {
        const ids = (k) => new RegExp(`"${k}"\\s*:\\s*"([A-Za-z0-9_-]{1,64})"`).exec(text)?.[1] ?? 'x';
        // an executor publishes accepted on pizza/orders/accepted, the other stages on the phone's status topic
        if (type === 'OrderStatus' && /"status"\s*:\s*"accepted"/.test(text)) topic = 'pizza/orders/accepted';
        else topic = type === 'OrderStatus' ? `pizza/users/${ids('user_id')}/orders/${ids('order_id')}/status` : `pizza/users/${ids('user_id')}/alerts`;
      }
      if (!topic) topic = 'pizza/orders/placed';
      n++;
      judge(`fuzz_event/${name}`, checkEvent(topics, topic, text));
    }
  const req = path.join(CORPUS, 'fuzz_order_request');
  if (fs.existsSync(req))
    for (const name of fs.readdirSync(req).sort()) {
      n++;
      judge(`fuzz_order_request/${name}`, checkEvent(topics, 'pizza/users/alice/orders/new', fs.readFileSync(path.join(req, name), 'utf8')));
    }
  function judge(name, r) {
    const wantInvalid = /^(invalid|not)_/.test(path.basename(name));
    if (wantInvalid && r.error === null) problems.push(`tests/fuzz/corpus/${name}: the decoder refuses it but the contract accepts it`);
    if (!wantInvalid && r.error !== null) problems.push(`tests/fuzz/corpus/${name}: the decoder accepts it but the contract refuses it: ${r.error}`);
  }
  return n;
}

function cmdCheckDocs() {
  const t0 = Date.now();
  const S = loadSchemas();
  const problems = [];
  compileAll(S, problems);
  const nSchemaEx = checkSchemaExamples(S, problems);
  let nRefs = 0;
  for (const f of [ASYNCAPI, OPENAPI]) nRefs += checkRefs(f, problems);
  let nAsync = 0;
  let nOpen = 0;
  let nCorpus = 0;
  if (problems.length === 0) {
    nAsync = checkAsyncapi(S, problems);
    nOpen = checkOpenapi(S, problems);
    nCorpus = checkCorpus(S, topicMap(S), problems);
  }
  for (const p of problems) console.log(p);
  console.log(
    `contract: ${S.all.length} schemas, ${nSchemaEx} schema examples, ${nRefs} $refs, ${nAsync} AsyncAPI examples, ${nOpen} OpenAPI examples, ${nCorpus} corpus files checked: ${problems.length} problems (${Date.now() - t0} ms)`,
  );
  return problems.length === 0 ? 0 : 1;
}

// ---- main ------------------------------------------------------------------------------------------

function usage() {
  console.error('usage: node validate.mjs check-docs | events <file.jsonl> | http <file.jsonl>');
  return 2;
}

function main(argv) {
  const [cmd, file] = argv;
  try {
    if (cmd === 'check-docs' && argv.length === 1) return cmdCheckDocs();
    if (cmd === 'events' && argv.length === 2) return cmdEvents(file);
    if (cmd === 'http' && argv.length === 2) return cmdHttp(file);
    return usage();
  } catch (e) {
    if (e instanceof SetupError) {
      console.error(`contract: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

process.exitCode = main(process.argv.slice(2));
