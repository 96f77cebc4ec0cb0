// The console's script: reads the state from the console's endpoints (relative to the page) and
// renders it with DOM calls only (textContent, never innerHTML: server names come from reports).
'use strict';

const $ = (id) => document.getElementById(id);
const auth = document.body.dataset.auth;
let stream = null;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// send makes a state-changing request the way the console requires: JSON body, its own header.
async function send(method, path, body) {
  const r = await fetch(path, {
    method, credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-Kumi-Console': '1'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let doc = null;
  if (r.status !== 204) {
    try { doc = await r.json(); } catch (e) { doc = null; }
  }
  if (!r.ok) throw new Error((doc && doc.error) || (r.status + ' ' + r.statusText));
  return doc;
}

function setStatus(id, ok, text) {
  const s = $(id);
  s.className = 'status ' + (ok ? 'ok' : 'err');
  s.textContent = text;
}

function fmtSeconds(s) {
  return s < 1 ? Math.round(s * 1000) + 'ms' : (Math.round(s * 10) / 10) + 's';
}

function renderServers(servers) {
  const box = $('servers');
  box.replaceChildren();
  for (const s of servers) {
    const card = el('div', 'card ' + s.state);
    card.dataset.server = s.name;
    card.append(el('h3', '', s.name));
    card.append(el('div', 'meta', s.backend + ' · ' + s.state + (s.adopted ? ' · adopted' : '')));
    const bar = el('div', 'bar');
    const fill = el('div');
    fill.style.width = (s.capacity > 0 ? Math.min(100, 100 * s.used / s.capacity) : 0) + '%';
    bar.append(fill);
    card.append(bar);
    card.append(el('div', 'meta sessions', s.sessions + ' sessions · ' + s.used + '/' + s.capacity + ' used · ' + s.free + ' free'));
    card.append(el('div', 'meta', s.address || 'no address yet'));
    box.append(card);
  }
  if (servers.length === 0) box.append(el('p', 'summary', 'no game servers in the pool'));
}

function renderBackends(st) {
  $('summary').textContent = st.servers.length + ' servers · ' + st.sessions + ' sessions · ' +
    st.groups + ' voice groups · ' + (Math.round(st.session_rate * 100) / 100) + ' new sessions/s';
  const box = $('backends');
  box.replaceChildren();
  for (const b of st.backends) {
    const d = el('div', 'backend');
    d.dataset.backend = b.name;
    d.append(el('strong', '', b.name));
    d.append(el('div', 'meta', 'free slots ' + b.free + ' of target ' + b.target + ' · weight ' + b.weight + '%'));
    const bar = el('div', 'bar');
    const fill = el('div');
    fill.style.width = (b.target > 0 ? Math.min(100, 100 * b.free / b.target) : 100) + '%';
    bar.append(fill);
    d.append(bar);
    box.append(d);
  }
}

// renderWeights keeps what the operator is typing: an input is made once per backend and only
// shows the weight in force until it is edited.
function renderWeights(backends) {
  const box = $('weight-inputs');
  for (const b of backends) {
    let input = box.querySelector('input[name="' + CSS.escape(b.name) + '"]');
    if (!input) {
      const label = el('label', '', b.name);
      input = el('input');
      Object.assign(input, {type: 'number', name: b.name, min: '0', max: '100', step: '0.01'});
      // Once the operator is at a field, incoming states no longer overwrite it.
      for (const ev of ['focus', 'input']) input.addEventListener(ev, () => { input.dataset.dirty = '1'; });
      label.append(input, el('span', '', '%'));
      box.append(label);
    }
    if (!input.dataset.dirty) input.value = String(b.weight);
  }
}

function renderHistogram(h) {
  const mean = h.count > 0 ? fmtSeconds(h.sum / h.count) : '–';
  $('hist-summary').textContent = h.count + ' tickets assigned · mean ' + mean +
    (h.over > 0 ? ' · ' + h.over + ' above ' + fmtSeconds(h.buckets[h.buckets.length - 1].le) : '');
  const box = $('histogram');
  box.replaceChildren();
  const max = Math.max(1, ...h.buckets.map((b) => b.n), h.over);
  const cols = h.buckets.map((b) => ({label: '≤' + fmtSeconds(b.le), n: b.n}));
  if (h.over > 0) cols.push({label: 'more', n: h.over});
  for (const c of cols) {
    const col = el('div', 'col');
    col.title = c.label + ': ' + c.n;
    const bar = el('div');
    bar.style.height = (100 * c.n / max) * 0.8 + '%';
    col.append(bar, el('span', '', c.label));
    box.append(col);
  }
}

function renderEvents(events) {
  events = events || [];
  const box = $('events');
  box.replaceChildren();
  for (const e of events.slice().reverse()) {
    let text = new Date(e.time).toLocaleTimeString() + ' ' + e.kind;
    if (e.kind === 'move' || e.kind === 'move_failed') text += ' session ' + e.session + ' ' + e.server + ' → ' + (e.to || '?');
    else if (e.server) text += ' ' + e.server;
    if (e.detail) text += ' (' + e.detail + ')';
    box.append(el('li', e.kind, text));
  }
  if (events.length === 0) box.append(el('li', '', 'no drains or moves yet'));
}

function render(st) {
  renderBackends(st);
  renderServers(st.servers);
  renderWeights(st.backends);
  renderHistogram(st.assignment);
  renderEvents(st.events);
}

function connect() {
  $('login').hidden = true;
  $('main').hidden = false;
  $('logout').hidden = auth === 'open';
  stream = new EventSource('events');
  stream.addEventListener('open', () => { $('conn').className = 'conn live'; $('conn').textContent = 'live'; });
  stream.addEventListener('state', (ev) => render(JSON.parse(ev.data)));
  stream.addEventListener('error', () => {
    if (stream.readyState === EventSource.CLOSED) {
      // Refused (e.g. the session expired): log in again.
      $('conn').className = 'conn down';
      $('conn').textContent = 'disconnected';
      if (auth !== 'open') showLogin();
    } else {
      $('conn').className = 'conn';
      $('conn').textContent = 'reconnecting…';
    }
  });
}

function showLogin() {
  if (stream) stream.close();
  $('main').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('conn').textContent = 'logged out';
  $('login-token').focus();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    await send('POST', 'login', {token: $('login-token').value});
    $('login-token').value = '';
    setStatus('login-status', true, '');
    connect();
  } catch (e) {
    setStatus('login-status', false, e.message);
  }
});

$('logout').addEventListener('click', async () => {
  try { await send('POST', 'logout'); } finally { showLogin(); }
});

$('weights').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const weights = {};
  for (const input of $('weight-inputs').querySelectorAll('input')) weights[input.name] = Number(input.value);
  try {
    const doc = await send('PUT', 'weights', {weights});
    for (const input of $('weight-inputs').querySelectorAll('input')) {
      delete input.dataset.dirty;
      if (input.name in doc.weights) input.value = String(doc.weights[input.name]);
    }
    setStatus('weights-status', true, 'weights set: ' + Object.entries(doc.weights).map(([b, w]) => b + ' ' + w + '%').join(', '));
  } catch (e) {
    setStatus('weights-status', false, e.message);
  }
});

if (auth === 'login') showLogin(); else connect();
