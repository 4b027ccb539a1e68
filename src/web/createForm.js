// The create form: what POST /v1/sessions takes, as fields. The limits are
// the daemon's own limit table (/limitTable.js: field, unit, range, default)
// and the profiles its own list, so a new limit or profile shows up here by
// itself. The form does not second-guess the daemon: an empty field is the
// daemon's default, and what the daemon refuses comes back as its one-line
// error under the form.
import { LIMITS } from '/limitTable.js';
import { PROFILES } from '/profiles.js';
import { api } from './api.js';
import { el, oneLine } from './format.js';

const field = (label, input, hint) => el('label', { class: 'field' }, el('span', { class: 'label', text: label }), input, hint ? el('span', { class: 'hint', text: hint }) : null);

/** Rows of inputs that can be added and removed (volumes, ports). */
class Rows {
  constructor(id, title, addLabel, make) {
    this.make = make;
    this.list = el('div', { class: 'rows' });
    this.box = el('fieldset', { class: 'repeat', id }, el('legend', { text: title }), this.list, el('button', { type: 'button', class: 'quiet add', text: addLabel, onclick: () => this.add() }));
  }

  add() {
    const inputs = this.make();
    const row = el('div', { class: 'row' }, ...Object.values(inputs), el('button', { type: 'button', class: 'quiet', title: 'remove', text: '×', onclick: () => row.remove() }));
    row.inputs = inputs;
    this.list.append(row);
    Object.values(inputs)[0].focus();
  }

  values() {
    return [...this.list.children].map((r) => r.inputs);
  }

  clear() {
    this.list.replaceChildren();
  }
}

export class CreateForm {
  /** @param {(session) => void} created */
  constructor(dialog, created) {
    this.dialog = dialog;
    this.created = created;
    this.form = dialog.querySelector('form');
    this.volumeNames = el('datalist', { id: 'volume-names' });
    this.inputs = {
      name: el('input', { name: 'name', autocomplete: 'off', placeholder: 'optional, e.g. web', spellcheck: 'false' }),
      profile: el('select', { name: 'profile' }, el('option', { value: '', text: 'daemon default' }), ...PROFILES.map((p) => el('option', { value: p, text: p }))),
      network: el('select', { name: 'network' }, el('option', { value: '', text: 'daemon default' }), el('option', { value: 'bridge', text: 'bridge' }), el('option', { value: 'none', text: 'none (lo only)' })),
      idle: el('input', { name: 'idle', type: 'number', min: 0, step: 1, placeholder: 'daemon default' }),
      console: el('input', { name: 'console', type: 'checkbox' }),
      env: el('textarea', { name: 'env', rows: 2, placeholder: 'NAME=VALUE, one a line (not for secrets)', spellcheck: 'false' }),
    };
    this.limits = LIMITS.map((row) => ({
      row,
      input: el('input', { name: row.key, type: 'number', min: row.min, max: row.max, step: 1, placeholder: String(row.default), title: `${row.what}: ${row.min}..${row.max} ${row.unit}` }),
    }));
    this.volumes = new Rows('create-volumes', 'Volumes', '+ volume', () => ({
      name: el('input', { placeholder: 'volume name', list: 'volume-names', 'aria-label': 'volume name', spellcheck: 'false' }),
      target: el('input', { placeholder: '/home/work', 'aria-label': 'mount point', spellcheck: 'false' }),
      readonly: el('label', { class: 'check' }, el('input', { type: 'checkbox' }), 'ro'),
    }));
    this.ports = new Rows('create-ports', 'Published ports', '+ port', () => ({
      host_ip: el('input', { value: '127.0.0.1', 'aria-label': 'host address', size: 10 }),
      host_port: el('input', { type: 'number', min: 1, max: 65535, placeholder: 'host port', 'aria-label': 'host port' }),
      session_port: el('input', { type: 'number', min: 1, max: 65535, placeholder: 'session port', 'aria-label': 'session port' }),
    }));
    this.error = el('p', { class: 'error', id: 'create-error', role: 'alert' });
    this.submit = el('button', { type: 'submit', id: 'create-submit', text: 'Create' });
    this.form.replaceChildren(
      el('h2', { text: 'New session' }),
      el('div', { class: 'grid' }, field('Name', this.inputs.name), field('Profile', this.inputs.profile), field('Network', this.inputs.network), field('Idle stop (s)', this.inputs.idle, '0: never')),
      el('fieldset', { class: 'limits' }, el('legend', { text: 'Limits (empty: the daemon\'s default)' }), el('div', { class: 'grid' }, ...this.limits.map(({ row, input }) => field(`${row.label} (${row.unit})`, input, row.writableRootOnly ? 'workspace only' : null)))),
      this.volumes.box,
      this.ports.box,
      field('Environment', this.inputs.env),
      el('label', { class: 'check' }, this.inputs.console, 'start its console now (else on first attach)'),
      this.volumeNames,
      this.error,
      el('div', { class: 'buttons' }, el('button', { type: 'button', class: 'quiet', text: 'Cancel', onclick: () => this.dialog.close() }), this.submit),
    );
    this.form.noValidate = true; // the daemon decides, and says why in one line
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.send();
    });
  }

  async open() {
    this.form.reset();
    this.volumes.clear();
    this.ports.clear();
    this.error.textContent = '';
    this.submit.disabled = false;
    this.submit.textContent = 'Create';
    this.dialog.showModal();
    this.inputs.name.focus();
    try {
      const { volumes } = await api.get('/v1/volumes');
      this.volumeNames.replaceChildren(...volumes.map((v) => el('option', { value: v.name })));
    } catch {
      /* no volumes to suggest: typing a name still works */
    }
  }

  /** The request body: only what was filled in. A number field that is not a number goes as text, for the daemon to name. */
  body() {
    const num = (v) => (v.trim() === '' ? undefined : Number.isFinite(Number(v)) ? Number(v) : v);
    const b = {};
    const i = this.inputs;
    if (i.name.value.trim()) b.name = i.name.value.trim();
    if (i.profile.value) b.profile = i.profile.value;
    if (i.network.value) b.network = i.network.value;
    if (num(i.idle.value) !== undefined) b.idle_timeout_s = num(i.idle.value);
    if (i.console.checked) b.console = true;
    for (const { row, input } of this.limits) if (num(input.value) !== undefined) b[row.key] = num(input.value);
    const env = i.env.value.split('\n').map((l) => l.trim()).filter(Boolean);
    if (env.length) b.env = env;
    const vols = this.volumes.values().filter((v) => v.name.value.trim() || v.target.value.trim());
    if (vols.length) b.volumes = vols.map((v) => ({ name: v.name.value.trim(), target: v.target.value.trim(), readonly: v.readonly.querySelector('input').checked }));
    const ports = this.ports.values().filter((p) => p.host_port.value || p.session_port.value);
    if (ports.length) b.publish = ports.map((p) => ({ host_ip: p.host_ip.value.trim(), host_port: num(p.host_port.value), session_port: num(p.session_port.value) }));
    return b;
  }

  async send() {
    this.error.textContent = '';
    this.submit.disabled = true;
    this.submit.textContent = 'Creating…';
    try {
      const s = await api.post('/v1/sessions', this.body());
      this.dialog.close();
      this.created(s);
    } catch (e) {
      this.error.textContent = oneLine(e.message);
    } finally {
      this.submit.disabled = false;
      this.submit.textContent = 'Create';
    }
  }
}
