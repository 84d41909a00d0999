// A line-based terminal into a running task: `sh` over the exec websocket
// (GET /v1/tasks/{id}/exec/ws?cmd=["sh"]&tty=true). Browsers cannot set headers on a websocket,
// so the token goes as the subprotocol `bearer.<base64url>` beside `tepui`.
// Frames: binary to the server is stdin; from the server, binary frames start with 1 (stdout)
// or 2 (stderr), and a text frame {"exit_code": N} or {"error", "code"} ends the session.

import {token, base64url} from './api.js';
import {h, newId, announce, alertBox} from './dom.js';
import {appendTo, clean} from './logs.js';

const encoder = new TextEncoder();

export function terminalView(taskId, pageSignal) {
  const inputId = newId('term-in');
  const open = h('button', {type: 'button'}, 'Open terminal');
  const close = h('button', {type: 'button', hidden: true}, 'Close terminal');
  const interrupt = h('button', {type: 'button', disabled: true, 'aria-label': 'Send Ctrl-C'}, 'Ctrl-C');
  const state = h('span', {class: 'muted'}, 'Closed');
  const errors = h('div', {class: 'error-slot'});
  const out = h('pre', {class: 'log terminal', role: 'log', 'aria-label': 'Terminal output', tabindex: 0});
  const input = h('input', {id: inputId, type: 'text', disabled: true, autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', enterkeyhint: 'send'});
  const send = h('button', {type: 'submit', disabled: true}, 'Send');
  const form = h('form', {class: 'terminal-input'}, h('label', {for: inputId}, 'Terminal input'), input, send, interrupt);
  const history = [];
  let back = 0;
  let ws = null;
  let decoders = {};
  let withTty = true;
  // Lines typed before a tty session showed anything: sent again if it falls back to no tty.
  let unanswered = [];
  let answered = false;

  const setOpen = (on) => {
    open.hidden = on;
    close.hidden = !on;
    for (const el of [input, send, interrupt]) el.disabled = !on;
  };

  // A terminal (tty) gives a prompt and echoes input. Where the task cannot have one, `sh` runs
  // without it and the lines sent are echoed here instead.
  const connect = (tty = true) => {
    withTty = tty;
    errors.replaceChildren();
    if (tty) out.replaceChildren();
    decoders = {1: new TextDecoder(), 2: new TextDecoder()};
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const cmd = encodeURIComponent(JSON.stringify(['sh']));
    const url = `${scheme}://${location.host}/v1/tasks/${encodeURIComponent(taskId)}/exec/ws?cmd=${cmd}&tty=${tty}`;
    state.textContent = 'Connecting…';
    let ended = false;
    let output = false;
    let retry = false;
    answered = false;
    if (tty) unanswered = [];
    const socket = new WebSocket(url, ['tepui', `bearer.${base64url(token.get() || '')}`]);
    socket.binaryType = 'arraybuffer';
    ws = socket;
    socket.onopen = () => {
      state.textContent = 'Connected';
      setOpen(true);
      input.focus();
      if (!tty) {
        for (const line of unanswered) {
          appendTo(out, `$ ${line}\n`);
          socket.send(encoder.encode(`${line}\n`));
        }
        unanswered = [];
      }
      announce('Terminal connected');
    };
    socket.onmessage = (ev) => {
      if (typeof ev.data === 'string') {
        let msg = {};
        try { msg = JSON.parse(ev.data); } catch { msg = {error: ev.data}; }
        ended = true;
        if (msg.error && tty && !output) {
          retry = true;
          appendTo(out, `[no terminal: ${msg.error}; running sh without one]\n`);
        } else if (msg.error) {
          errors.append(alertBox(`The terminal ended: ${msg.error}`));
        } else {
          appendTo(out, `\n[exited with code ${msg.exit_code}]\n`);
        }
        return;
      }
      output = true;
      answered = true;
      unanswered = [];
      const bytes = new Uint8Array(ev.data);
      const decoder = decoders[bytes[0]] || decoders[1];
      appendTo(out, clean(decoder.decode(bytes.subarray(1), {stream: true})));
    };
    socket.onclose = (ev) => {
      if (ws === socket) ws = null;
      if (retry && !pageSignal.aborted) {
        connect(false);
        return;
      }
      const hadFocus = form.contains(document.activeElement) || document.activeElement === close;
      setOpen(false);
      // The focused control just went away: the keyboard continues from "Open terminal".
      if (hadFocus || document.activeElement === document.body) open.focus();
      state.textContent = 'Closed';
      if (!ended && ev.code === 1006) {
        errors.append(alertBox('The terminal could not be opened, or its connection broke: the task may have ended, or the token may lack the exec capability.'));
      }
      announce('Terminal closed');
    };
  };

  const sendBytes = (bytes) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(bytes);
  };

  open.addEventListener('click', () => connect(true));
  close.addEventListener('click', () => {
    // Closing stdin ends `sh`; the socket follows when the server sends the exit code.
    if (ws && ws.readyState === WebSocket.OPEN) ws.send('eof');
    setTimeout(() => ws && ws.close(), 2000);
  });
  interrupt.addEventListener('click', () => sendBytes(new Uint8Array([3])));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const line = input.value;
    if (line) history.push(line);
    back = 0;
    if (!withTty && ws) appendTo(out, `$ ${line}\n`);
    if (withTty && !answered) unanswered.push(line);
    sendBytes(encoder.encode(`${line}\n`));
    input.value = '';
  });
  // Up and Down walk the lines sent before, as in a shell.
  input.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowUp' && e.key !== 'ArrowDown') return;
    if (!history.length) return;
    e.preventDefault();
    back = Math.max(0, Math.min(history.length, back + (e.key === 'ArrowUp' ? 1 : -1)));
    input.value = back ? history[history.length - back] : '';
  });
  pageSignal.addEventListener('abort', () => ws && ws.close(), {once: true});

  return h('div', {class: 'terminal-view'},
    h('div', {class: 'toolbar'}, open, close, state),
    errors, out, form);
}
