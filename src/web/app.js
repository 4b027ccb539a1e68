// The Enclave browser terminal. It speaks v1.attach.enclave.dev: binary frames,
// channel byte first; acks output once xterm has rendered it; resumes from
// its offset after a network blip. The token lives in sessionStorage and only
// ever travels in an Authorization header; WebSockets use one-time tickets.
// An ES module: the wire constants come from the daemon's own module.
import { ATTACH_PROTOCOL as PROTOCOL, Channel as CH } from '/protocol.js';

const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();

const term = new Terminal({ convertEol: false, scrollback: 5000, fontSize: 14 });
const fit = new FitAddon.FitAddon();
term.loadAddon(fit);
term.open($('term'));
fit.fit();

let token = sessionStorage.getItem('enclave-token') || '';
let current = null; // { id, ws, offset, ended }

function status(text) {
  $('status').textContent = text;
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = res.status === 204 ? null : await res.json();
  if (!res.ok) throw new Error(data && data.error ? data.error.message : `HTTP ${res.status}`);
  return data;
}

async function refresh() {
  const { sessions } = await api('GET', '/v1/sessions');
  const ul = $('sessions');
  ul.replaceChildren(
    ...sessions
      .filter((s) => s.state === 'running')
      .map((s) => {
        const li = document.createElement('li');
        li.textContent = `${s.name || s.id} (${s.network.address || 'no net'})`;
        li.dataset.id = s.id;
        if (current && current.id === s.id) li.className = 'active';
        li.onclick = () => open(s.id);
        return li;
      }),
  );
}

function frame(ch, bytes) {
  const out = new Uint8Array(bytes.length + 1);
  out[0] = ch;
  out.set(bytes, 1);
  return out;
}

async function connect(c, resume) {
  const { ticket } = await api('POST', '/v1/tickets');
  const q = new URLSearchParams({ ticket, role: 'rw', cols: String(term.cols), rows: String(term.rows) });
  if (resume !== undefined) q.set('resume', String(resume));
  const ws = new WebSocket(`ws://${location.host}/v1/sessions/${c.id}/attach?${q}`, [PROTOCOL]);
  ws.binaryType = 'arraybuffer';
  c.ws = ws;
  ws.onopen = () => status(`attached to ${c.id}`);
  ws.onmessage = (ev) => {
    const data = new Uint8Array(ev.data);
    const ch = data[0];
    const payload = data.subarray(1);
    if (ch === CH.stdout) {
      // Ack once xterm has taken the bytes: the server never runs ahead of us.
      term.write(payload, () => {
        c.offset += payload.length;
        if (ws.readyState === WebSocket.OPEN) ws.send(frame(CH.ack, enc.encode(String(c.offset))));
      });
    } else if (ch === CH.snapshot) {
      // The screen as the server's mirror has it (after hello reset ours); not part of the offset.
      term.write(payload);
    } else if (ch === CH.events) {
      const e = JSON.parse(new TextDecoder().decode(payload));
      if (e.type === 'hello') {
        if (!e.resumed) term.reset();
        c.offset = e.offset;
      }
      if (e.type === 'viewers') status(`attached to ${c.id} — ${e.viewers} viewer(s)`);
    } else if (ch === CH.status) {
      c.ended = true;
      const st = JSON.parse(new TextDecoder().decode(payload));
      status(`shell ended: ${st.status === 'Success' ? 'exit 0' : st.message}`);
    }
  };
  ws.onclose = () => {
    if (current !== c || c.ended) return;
    status('connection lost; resuming…');
    setTimeout(() => current === c && connect(c, c.offset).catch((e) => status(String(e))), 1000);
  };
}

async function open(id) {
  if (current && current.ws) {
    current.ended = true;
    current.ws.close();
  }
  term.reset();
  current = { id, ws: null, offset: 0, ended: false };
  await connect(current);
  await refresh();
  term.focus();
}

term.onData((s) => current && current.ws && current.ws.readyState === WebSocket.OPEN && current.ws.send(frame(CH.stdin, enc.encode(s))));
term.onBinary((s) => current && current.ws && current.ws.send(frame(CH.stdin, Uint8Array.from(s, (c) => c.charCodeAt(0)))));
term.onResize(({ cols, rows }) => {
  if (current && current.ws && current.ws.readyState === WebSocket.OPEN) {
    current.ws.send(frame(CH.resize, enc.encode(JSON.stringify({ Width: cols, Height: rows }))));
  }
});
window.addEventListener('resize', () => fit.fit());

$('create').onclick = async () => {
  try {
    const s = await api('POST', '/v1/sessions', {});
    await open(s.id);
  } catch (e) {
    status(String(e));
  }
};

async function signIn() {
  try {
    await refresh();
    sessionStorage.setItem('enclave-token', token);
    $('login').hidden = true;
    $('app').hidden = false;
    status('signed in');
  } catch (e) {
    status(`sign-in failed: ${e.message}`);
  }
}

$('login').onsubmit = (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  signIn();
};
if (token) signIn();
