// The status page of wsgate's admin address.
//
// It reads GET /events, a snapshot and then changes as server-sent
// events, through fetch rather than EventSource so that the admin token,
// when the gateway wants one, goes in the Authorization header as for
// every other admin request (never in a cookie or a URL). The pairing
// buttons call the protocols' admin routes the same way. Everything the
// gateway reports is put into the page as text, never as HTML.
'use strict';

const tokenKey = 'wsgate.adminToken';
const retryMin = 1000;
const retryMax = 15000;
// The gateway sends a comment every 15 s; a stream silent for longer
// than this is dead, whatever TCP thinks.
const silenceLimit = 40000;

const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

// The devices shown: id -> table row.
const deviceRows = new Map();
let haveSnapshot = false;
let stream = null; // the AbortController of the open stream

function authHeaders() {
  const token = sessionStorage.getItem(tokenKey);
  return token ? { Authorization: 'Bearer ' + token } : {};
}

// ---- Formatting ----

const numberFormat = new Intl.NumberFormat();

function timeCell(td, iso) {
  td.replaceChildren();
  if (!iso) {
    td.textContent = '–';
    return;
  }
  const when = new Date(iso);
  const el = document.createElement('time');
  el.dateTime = iso;
  el.title = when.toLocaleString();
  const today = new Date().toDateString() === when.toDateString();
  el.textContent = today ? when.toLocaleTimeString() : when.toLocaleString();
  td.append(el);
}

function bytes(n) {
  if (n < 1024) return numberFormat.format(n) + ' B';
  if (n < 1024 * 1024) return numberFormat.format(Math.round(n / 102.4) / 10) + ' KiB';
  return numberFormat.format(Math.round(n / (1024 * 102.4)) / 10) + ' MiB';
}

function badge(state, text) {
  const el = document.createElement('span');
  el.className = 'badge';
  el.dataset.state = state;
  el.textContent = text || state;
  return el;
}

// cell makes a table cell labelled for the phone layout.
function cell(label, opts = {}) {
  const td = document.createElement(opts.header ? 'th' : 'td');
  td.setAttribute('role', opts.header ? 'rowheader' : 'cell');
  if (opts.header) td.scope = 'row';
  td.dataset.label = label;
  if (opts.className) td.className = opts.className;
  if (opts.text !== undefined) td.textContent = opts.text;
  return td;
}

function row() {
  const tr = document.createElement('tr');
  tr.setAttribute('role', 'row');
  return tr;
}

function notice(text) {
  $('notice').textContent = text;
}

function setLive(state, text) {
  const el = $('live');
  el.dataset.state = state;
  el.textContent = text;
}

// ---- Devices ----

const deviceColumns = ['Device', 'Protocol', 'Address', 'Connected since', 'Messages in', 'Messages out', 'Last message'];

function deviceRow(d) {
  const tr = row();
  tr.dataset.id = d.id;
  tr.append(
    cell(deviceColumns[0], { header: true, className: 'id' }),
    cell(deviceColumns[1]),
    cell(deviceColumns[2], { className: 'id' }),
    cell(deviceColumns[3]),
    cell(deviceColumns[4], { className: 'number' }),
    cell(deviceColumns[5], { className: 'number' }),
    cell(deviceColumns[6]),
  );
  fillDevice(tr, d);
  return tr;
}

function fillDevice(tr, d) {
  const c = tr.children;
  c[0].textContent = d.id;
  c[1].textContent = d.protocol;
  c[2].textContent = d.address || 'local';
  timeCell(c[3], d.since);
  c[4].textContent = numberFormat.format(d.in);
  c[5].textContent = numberFormat.format(d.out);
  timeCell(c[6], d.last);
}

// putDevice adds or updates a device's row, keeping rows sorted by id.
function putDevice(d) {
  const have = deviceRows.get(d.id);
  if (have) {
    fillDevice(have, d);
    return false;
  }
  const tr = deviceRow(d);
  const rows = $('devices').tBodies[0].rows;
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) { // the first row after d.id
    const mid = (lo + hi) >> 1;
    if (rows[mid].dataset.id < d.id) lo = mid + 1;
    else hi = mid;
  }
  $('devices').tBodies[0].insertBefore(tr, rows[lo] || null);
  deviceRows.set(d.id, tr);
  return true;
}

function removeDevice(id) {
  const tr = deviceRows.get(id);
  if (!tr) return false;
  tr.remove();
  deviceRows.delete(id);
  return true;
}

function deviceCount() {
  const n = deviceRows.size;
  $('device-count').textContent = `(${numberFormat.format(n)})`;
  $('devices-empty').hidden = n > 0;
  $('devices').hidden = n === 0;
}

// setDevices shows the devices of a snapshot: the first one as it is,
// later ones (after a reconnection or a resync) as changes.
function setDevices(list) {
  const keep = new Set(list.map((d) => d.id));
  const gone = [...deviceRows.keys()].filter((id) => !keep.has(id));
  changeDevices({ set: list, gone }, haveSnapshot);
}

// changeDevices applies changes and, when announce is set, says which
// devices came and went.
function changeDevices(changes, announce) {
  const came = [];
  const went = [];
  for (const id of changes.gone || []) {
    if (removeDevice(id)) went.push(id);
  }
  for (const d of changes.set || []) {
    if (putDevice(d)) came.push(d.id);
  }
  deviceCount();
  const parts = [];
  if (came.length) parts.push(`Connected: ${names(came)}.`);
  if (went.length) parts.push(`Disconnected: ${names(went)}.`);
  if (announce && parts.length) notice(parts.join(' '));
}

// names lists a few device ids, or counts many.
function names(ids) {
  return ids.length <= 5 ? ids.join(', ') : `${numberFormat.format(ids.length)} devices`;
}

// ---- Pairing ----

const stateOrder = { pending: 0, trusted: 1, rejected: 2 };

function setPairing(groups) {
  const section = $('pairing-section');
  section.hidden = groups.length === 0;
  const peers = [];
  for (const g of groups) {
    for (const p of g.peers) peers.push({ protocol: g.protocol, ...p });
  }
  peers.sort((a, b) => (stateOrder[a.state] ?? 3) - (stateOrder[b.state] ?? 3) || a.id.localeCompare(b.id));
  const tbody = $('peers').tBodies[0];
  // Keep the focus on a button that is redrawn with the same peer.
  const focused = document.activeElement && tbody.contains(document.activeElement)
    ? { id: document.activeElement.dataset.id, action: document.activeElement.dataset.action } : null;
  tbody.replaceChildren(...peers.map(peerRow));
  $('peers').hidden = peers.length === 0;
  $('peers-empty').hidden = peers.length > 0;
  if (focused) {
    const again = [...tbody.querySelectorAll('button')].find((b) => b.dataset.id === focused.id && b.dataset.action === focused.action);
    if (again && !again.disabled) again.focus();
  }
}

function peerRow(p) {
  const tr = row();
  tr.dataset.id = p.id;
  tr.dataset.state = p.state;
  const name = p.name || p.id;
  const state = cell('State');
  state.append(badge(p.state, p.state + (p.auto ? ' (auto)' : '')));
  const seen = cell('Last seen');
  timeCell(seen, p.lastSeen);
  const decision = cell('Decision');
  const actions = document.createElement('div');
  actions.className = 'actions';
  for (const [action, label, done] of [['approve', 'Approve', 'trusted'], ['reject', 'Reject', 'rejected']]) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.className = action === 'reject' ? 'secondary' : '';
    b.dataset.action = action;
    b.dataset.id = p.id;
    b.dataset.protocol = p.protocol;
    b.setAttribute('aria-label', `${label} ${name}`);
    b.disabled = p.state === done;
    b.addEventListener('click', () => decide(b, p.protocol, p.id, action, name));
    actions.append(b);
  }
  decision.append(actions);
  tr.append(
    cell('Peer', { header: true, className: 'id', text: p.id }),
    cell('Name', { text: p.name || '–' }),
    cell('Protocol', { text: p.protocol }),
    state,
    seen,
    decision,
  );
  return tr;
}

// decide approves or rejects a peer through its protocol's admin route.
async function decide(button, protocol, id, action, name) {
  button.disabled = true;
  const path = `/${encodeURIComponent(protocol)}/peers/${encodeURIComponent(id)}/${action}`;
  let resp;
  try {
    resp = await fetch(path, { method: 'POST', headers: authHeaders(), cache: 'no-store' });
  } catch (err) {
    notice(`Could not ${action} ${name}: ${err.message}`);
    button.disabled = false;
    return;
  }
  if (resp.status === 401) {
    askForToken(`Approving and rejecting peers needs the admin token.`);
    button.disabled = false;
    return;
  }
  if (!resp.ok) {
    notice(`Could not ${action} ${name}: ${await errorText(resp)}`);
    button.disabled = false;
    return;
  }
  // The stream brings the new state within a second. The page takes it
  // from there only: a snapshot read here could be newer than the state
  // the stream's next changes are made from.
  notice(`${name}: ${action === 'approve' ? 'approved' : 'rejected'}.`);
}

async function errorText(resp) {
  const text = (await resp.text()).trim();
  try {
    const body = JSON.parse(text);
    if (body && body.error) return body.error;
  } catch {
    // not JSON: the text itself
  }
  return text || `${resp.status} ${resp.statusText}`;
}

// ---- The rest ----

function setGateway(g) {
  $('gateway-id').textContent = g.id;
  document.title = `wsgate ${g.id}`;
  $('gateway-version').textContent = g.version || '–';
  timeCell($('gateway-started'), g.started);
  $('gateway-connections').textContent = numberFormat.format(g.connections);
}

function setBridge(b) {
  const connected = $('bridge-connected');
  connected.replaceChildren(b.connected ? badge('connected') : badge('disconnected', 'not connected: frames are spooled'));
  $('bridge-spool').textContent = `${numberFormat.format(b.spoolFrames)} frames (${bytes(b.spoolBytes)})`;
  $('bridge-published').textContent = numberFormat.format(b.published);
  $('bridge-spooled').textContent = numberFormat.format(b.spooled);
  $('bridge-replayed').textContent = numberFormat.format(b.replayed);
  const lost = b.spoolRejected + b.spoolDropped + b.qos0Dropped + b.queueFull;
  const el = $('bridge-lost');
  el.textContent = numberFormat.format(lost);
  el.title = `spool full: ${b.spoolRejected} refused, ${b.spoolDropped} dropped; QoS 0 dropped: ${b.qos0Dropped}; queue full: ${b.queueFull}`;
}

function setProtocols(list) {
  $('protocols').tBodies[0].replaceChildren(...list.map((p) => {
    const tr = row();
    tr.dataset.id = p.name;
    const state = cell('State');
    state.append(badge(p.state));
    tr.append(
      cell('Preference', { className: 'number', text: p.preference ? String(p.preference) : '–' }),
      cell('Protocol', { header: true, text: p.name }),
      cell('Origin', { className: p.origin === 'builtin' ? '' : 'id', text: p.origin || '–' }),
      state,
    );
    return tr;
  }));
}

function setPlugins(list) {
  $('plugins').hidden = list.length === 0;
  $('plugins-empty').hidden = list.length > 0;
  $('plugins').tBodies[0].replaceChildren(...list.map((p) => {
    const tr = row();
    tr.dataset.id = p.path;
    const state = cell('State');
    state.append(badge(p.state));
    tr.append(
      cell('Plugin', { header: true, className: 'id', text: p.path }),
      cell('Protocols', { text: p.protocols.join(', ') }),
      cell('Version', { text: p.version || '–' }),
      state,
      cell('Restarts', { className: 'number', text: numberFormat.format(p.restarts) }),
    );
    return tr;
  }));
}

function applySnapshot(s) {
  setGateway(s.gateway);
  setBridge(s.bridge);
  setProtocols(s.protocols);
  setPlugins(s.plugins);
  setPairing(s.pairing);
  setDevices(s.devices);
  haveSnapshot = true;
}

function applyUpdate(u) {
  if (!haveSnapshot) return;
  if (u.gateway) setGateway(u.gateway);
  if (u.bridge) setBridge(u.bridge);
  if (u.protocols) setProtocols(u.protocols);
  if (u.plugins) setPlugins(u.plugins);
  if (u.pairing) setPairing(u.pairing);
  if (u.devices) changeDevices(u.devices, true);
}

// ---- The stream ----

function dispatch(block) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return;
  const payload = JSON.parse(data.join('\n'));
  if (name === 'snapshot') applySnapshot(payload);
  else if (name === 'update') applyUpdate(payload);
}

async function readStream() {
  stream = new AbortController();
  const controller = stream;
  const resp = await fetch('/events', { headers: authHeaders(), cache: 'no-store', signal: controller.signal });
  if (resp.status === 401) {
    const had = sessionStorage.getItem(tokenKey);
    throw new Unauthorized(had ? 'The gateway did not accept that token.' : "This gateway's admin endpoints want their token (admin.token_file).");
  }
  if (!resp.ok) throw new Error(await errorText(resp));
  setLive('live', 'Live');
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let silence = setTimeout(() => controller.abort(), silenceLimit);
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      clearTimeout(silence);
      silence = setTimeout(() => controller.abort(), silenceLimit);
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } finally {
    clearTimeout(silence);
  }
}

let following = false;

// follow keeps a stream open, again after each failure, until the gateway
// wants a token the page does not have.
async function follow() {
  if (following) return;
  following = true;
  let delay = retryMin;
  try {
    for (;;) {
      try {
        await readStream();
        delay = retryMin;
      } catch (err) {
        if (err instanceof Unauthorized) {
          askForToken(err.message);
          return;
        }
        if (stream && stream.signal.aborted && stream.signal.reason === 'signed out') return;
      }
      setLive('offline', 'Not connected; trying again');
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, retryMax);
    }
  } finally {
    following = false;
  }
}

// ---- The token ----

function askForToken(reason) {
  sessionStorage.removeItem(tokenKey);
  $('sign-out').hidden = true;
  $('sign-in-reason').textContent = reason;
  $('sign-in').hidden = false;
  setLive('signed-out', 'Admin token needed');
  $('token').focus();
}

$('sign-in').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('token');
  const token = input.value.trim();
  if (!token) return;
  sessionStorage.setItem(tokenKey, token);
  input.value = '';
  $('sign-in').hidden = true;
  $('sign-out').hidden = false;
  setLive('connecting', 'Connecting…');
  follow();
});

$('sign-out').addEventListener('click', () => {
  if (stream) stream.abort('signed out');
  askForToken('Token forgotten. Enter it again to see the gateway.');
});

if (sessionStorage.getItem(tokenKey)) $('sign-out').hidden = false;
follow();
