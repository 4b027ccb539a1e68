// The Enclave dashboard: sign-in, the session list with live stats, the
// create form, consoles in tabs, the activity pane. The parts are modules of
// their own; this one wires them to the page and to each other. Sign-in is
// an HttpOnly cookie the token buys once (POST /v1/login): it outlives
// daemon restarts, and the token is never stored by the page.
import { api, sessionPath, whenSignedOut } from './api.js';
import { Activity } from './activity.js';
import { CreateForm } from './createForm.js';
import { oneLine, sessionLabel } from './format.js';
import { Live } from './live.js';
import { SessionList } from './sessions.js';
import { TerminalTabs } from './terminals.js';

const $ = (id) => document.getElementById(id);

/** One line at the bottom: what happened last, or the error the daemon gave. */
function status(text, isError = false) {
  const s = $('status');
  s.textContent = oneLine(text);
  s.classList.toggle('error', isError);
}

const fail = (what) => (e) => status(`${what}: ${e.message}`, true);

const tabs = new TerminalTabs($('tabs'), $('terminals'), $('no-terminal'), (t) => status(t));
const activity = new Activity($('activity'));

/** Destroy asks first: a modal that names the session, Cancel focused. */
function confirmDestroy(s) {
  const d = $('confirm-dialog');
  $('confirm-text').textContent = `Destroy ${sessionLabel(s)}? Its processes end and its files (root layer, /home, /tmp) are gone for good; its volumes stay.`;
  d.returnValue = '';
  d.showModal();
  $('confirm-cancel').focus();
  return new Promise((resolve) => d.addEventListener('close', () => resolve(d.returnValue === 'destroy'), { once: true }));
}

const sessions = new SessionList($('sessions'), $('no-sessions'), $('count'), {
  attach: (s) => tabs.open(s),
  stop: (s) => {
    status(`stopping ${sessionLabel(s)}…`);
    api.post(sessionPath(s.id, '/stop')).then((v) => (sessions.upsert(v), status(`${sessionLabel(s)} stopped`)), fail(`stop ${sessionLabel(s)}`));
  },
  start: (s) => {
    status(`starting ${sessionLabel(s)}…`);
    api.post(sessionPath(s.id, '/start')).then((v) => (sessions.upsert(v), status(`${sessionLabel(s)} started`)), fail(`start ${sessionLabel(s)}`));
  },
  destroy: async (s) => {
    if (!(await confirmDestroy(s))) return;
    status(`destroying ${sessionLabel(s)}…`);
    api.del(sessionPath(s.id)).then(() => (sessions.remove(s.id), tabs.sessionChanged({ ...s, state: 'destroyed' }), status(`${sessionLabel(s)} destroyed`)), fail(`destroy ${sessionLabel(s)}`));
  },
  changed: (s) => tabs.sessionChanged(s),
});

const form = new CreateForm($('create-dialog'), (s) => {
  sessions.upsert(s);
  status(`${sessionLabel(s)} created`);
  if (s.state === 'running') tabs.open(s);
});

const live = new Live({
  sessions: (list) => sessions.replaceAll(list),
  session: (s) => sessions.upsert(s),
  audit: (e) => activity.add(e),
  state: (text, ok) => {
    $('live').textContent = text;
    $('live').classList.toggle('on', ok);
  },
  place: () => activity.place(),
  /**
   * The stream was refused: signed out (the sign-in form shows), or the
   * policy does not let this uid read events (no live updates: the list as
   * it is now, and what the page's own actions return), or a passing error
   * (try again later).
   */
  lost: async () => {
    try {
      sessions.replaceAll((await api.get('/v1/sessions')).sessions);
      await api.get('/v1/events?limit=1');
      return true;
    } catch (e) {
      if (e.status === 403) {
        $('live').textContent = 'no live updates';
        $('live').title = e.message;
      }
      return e.status !== 401 && e.status !== 403;
    }
  },
});

function showLogin(message = '') {
  live.close();
  sessions.stopStats();
  sessions.clear();
  tabs.closeAll();
  activity.clear();
  $('app').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message;
  $('token').value = '';
  $('token').focus();
}

async function showApp() {
  $('login-view').hidden = true;
  $('app').hidden = false;
  status('signed in');
  try {
    const { events } = await api.get('/v1/events?limit=30');
    for (const e of events) activity.add(e);
  } catch {
    /* the policy may not let this uid see events: the list still works */
  }
  live.open(activity.place());
  sessions.startStats();
}

whenSignedOut((e) => {
  if (!$('app').hidden) showLogin(e.message);
});

$('login').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const token = $('token').value.trim();
  $('token').value = '';
  try {
    await api.login(token);
    await showApp();
  } catch (e) {
    $('login-error').textContent = e.status === 401 ? 'that is not the token in state_dir/listen-token (it is new at every daemon start)' : e.message;
  }
});

$('sign-out').addEventListener('click', async () => {
  try {
    await api.logout();
  } catch {
    /* signed out already */
  }
  showLogin('signed out');
});

$('new-session').addEventListener('click', () => form.open());

// Signed in already (the cookie, from before a reload or a daemon restart)?
api.get('/v1/sessions').then(
  () => showApp(),
  (e) => showLogin(e.status === 401 ? '' : e.message),
);
