// The browser demo of the CPIM gateway: JsSIP registers over the gateway's
// WebSocket listener (RFC 7118), chats with one peer by SIP MESSAGE (RFC 3428)
// and watches the peer's presence (SUBSCRIBE presence, RFC 3856; PIDF, RFC 3863,
// with RPID activities, RFC 4480). No framework; query parameters prefill the
// form (ws, uri, password, peer) and auto=1 connects at once.
'use strict';

(function () {
  const PIDF = 'urn:ietf:params:xml:ns:pidf';
  const DM = 'urn:ietf:params:xml:ns:pidf:data-model';
  const RPID = 'urn:ietf:params:xml:ns:pidf:rpid';
  const JABBER = 'jabber:client';
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const defaults = {
    ws: 'ws://' + (location.hostname || '127.0.0.1') + ':5066/',
    uri: 'sip:romeo@sip.localhost',
    password: 'romeo',
    peer: 'sip:juliet@localhost',
  };
  let ua = null;
  let subscriber = null;

  for (const key of Object.keys(defaults)) {
    $(key).value = params.get(key) || defaults[key];
  }

  function setStatus(state, text) {
    $('status').dataset.state = state;
    $('status').textContent = text;
  }

  function addLine(kind, who, text) {
    const li = document.createElement('li');
    li.className = kind;
    const name = document.createElement('span');
    name.className = 'who';
    name.textContent = who;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    const when = document.createElement('span');
    when.className = 'when';
    when.textContent = new Date().toLocaleTimeString();
    li.append(name, body, when);
    $('log').append(li);
    return li;
  }

  // user@host of a URI (a JsSIP URI or a string), without its parameters.
  function userOf(uri) {
    if (uri && uri.host) {
      return (uri.user ? uri.user + '@' : '') + uri.host;
    }
    return String(uri).replace(/^sips?:/, '').replace(/[;?].*$/, '');
  }

  // PIDF -> available | away | busy | offline, and the first note (tuple or person).
  function parsePidf(xml) {
    const doc = new DOMParser().parseFromString(xml, 'application/xml');
    if (doc.getElementsByTagName('parsererror').length) {
      return null;
    }
    const basics = Array.from(doc.getElementsByTagNameNS(PIDF, 'basic'))
      .map((e) => e.textContent.trim());
    const open = basics.includes('open');
    const show = Array.from(doc.getElementsByTagNameNS(JABBER, 'show'))
      .map((e) => e.textContent.trim());
    const activities = Array.from(doc.getElementsByTagNameNS(RPID, 'activities'))
      .flatMap((a) => Array.from(a.children).map((c) => c.localName));
    const notes = Array.from(doc.getElementsByTagNameNS(PIDF, 'note'))
      .concat(Array.from(doc.getElementsByTagNameNS(DM, 'note')))
      .map((e) => e.textContent.trim()).filter((t) => t);
    let status = 'offline';
    if (open) {
      status = 'available';
      if (show.includes('dnd') || activities.includes('busy')) {
        status = 'busy';
      } else if (show.some((s) => s === 'away' || s === 'xa') || activities.includes('away')) {
        status = 'away';
      }
    }
    return { status: status, note: notes[0] || '' };
  }

  function showPresence(status, note) {
    $('presence').dataset.status = status;
    $('presence').textContent = status;
    $('presence-dot').dataset.status = status;
    $('presence-note').textContent = note;
  }

  function watch(peer) {
    subscriber = ua.subscribe(peer, 'presence', 'application/pidf+xml', {
      expires: 600,
      contentType: 'application/pidf+xml',
    });
    subscriber.on('notify', (isFinal, request, body) => {
      const state = body ? parsePidf(body) : null;
      if (state) {
        showPresence(state.status, state.note);
      } else if (isFinal) {
        showPresence('unknown', '');
      }
    });
    subscriber.on('terminated', (code, reason) => {
      showPresence('unknown', 'subscription ended' + (reason ? ': ' + reason : ''));
    });
    subscriber.subscribe();
  }

  function connect() {
    if (typeof JsSIP === 'undefined') {
      setStatus('error', 'JsSIP is missing: run scripts/web-build.sh (make run does).');
      return;
    }
    if (ua) {
      ua.stop();
    }
    const peer = $('peer').value.trim();
    $('buddy-name').textContent = userOf(peer);
    setStatus('connecting', 'Connecting to ' + $('ws').value + ' ...');
    ua = new JsSIP.UA({
      sockets: [new JsSIP.WebSocketInterface($('ws').value.trim())],
      uri: $('uri').value.trim(),
      password: $('password').value,
      register: true,
      register_expires: 600,
      user_agent: 'cpim-gateway web demo (JsSIP ' + JsSIP.version + ')',
    });
    ua.on('connected', () => setStatus('connected', 'Connected; registering ...'));
    ua.on('disconnected', () => setStatus('error', 'WebSocket disconnected.'));
    ua.on('registered', () => {
      setStatus('registered', 'Registered as ' + userOf($('uri').value) + '.');
      $('text').disabled = false;
      $('send-button').disabled = false;
      if (!subscriber) {
        watch(peer);
      }
    });
    ua.on('registrationFailed', (e) => setStatus('error', 'Registration failed: ' + e.cause));
    ua.on('newMessage', (e) => {
      if (e.originator === 'remote') {
        addLine('in', userOf(e.request.from.uri), e.request.body || '');
      }
    });
    ua.start();
  }

  function send(text) {
    const peer = $('peer').value.trim();
    const line = addLine('out', 'me', text);
    ua.sendMessage(peer, text, {
      contentType: 'text/plain',
      eventHandlers: {
        succeeded: () => line.classList.add('delivered'),
        failed: (e) => {
          line.classList.add('failed');
          line.title = 'not delivered: ' + e.cause;
        },
      },
    });
  }

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    subscriber = null;
    connect();
  });
  $('send').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('text').value;
    if (text.trim() && ua) {
      send(text);
      $('text').value = '';
    }
  });
  if (params.get('auto') === '1') {
    connect();
  }
  window.cpimDemo = { parsePidf: parsePidf };
})();
