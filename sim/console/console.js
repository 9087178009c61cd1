// ucwa-sim's console: shows the meetings, people's presence and instant
// messages, the bots' event channels and the faults, live, and plays the
// other people through the control API.
// The simulator publishes its changes; this script long-polls
// /_sim/console/events?after=N and redraws what changed.  No framework, no
// innerHTML: every text from the simulator goes in as text.
"use strict";

(function () {
  const model = { seq: 0, meetings: new Map(), apps: new Map(), messages: new Map(), users: [], people: new Map() };
  const cards = new Map(); // meeting id -> its card's parts (forms kept across redraws)
  const imCards = new Map(); // IM session id -> its card's parts

  // ---- helpers ----------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
  }

  function say(text) {
    document.getElementById("said").textContent = text;
  }

  async function control(path, body) {
    const r = await fetch("/_sim/" + path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}),
    });
    const answer = await r.json();
    if (!r.ok) throw new Error(answer.error || ("HTTP " + r.status));
    return answer;
  }

  // Runs a control action, saying what happened (or what went wrong).
  function act(path, body, done) {
    control(path, body).then(() => say(done), (err) => say("Refused: " + err.message));
  }

  // A control with its label around it.
  function field(text, control, wide) {
    return el("label", { class: "field" + (wide ? " wide" : "") }, el("span", { text }), control);
  }

  function fill(select, options) {
    const keep = select.value;
    select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
    if (options.some(([value]) => value === keep)) select.value = keep;
  }

  // ---- meetings ---------------------------------------------------------

  function memberItem(mt, x) {
    const who = x.name + (x.name !== x.key ? " (" + x.key + ")" : "");
    const li = el("li", { "data-key": x.key }, el("span", { class: "who", text: who }));
    if (!x.virtual) li.append(" ", el("span", { class: "badge bot", text: "bot · app " + x.app }));
    if (x.role === "Leader" && x.state === "lobby") li.append(" ", el("span", { class: "badge", text: "leader" }));
    if (x.typing) li.append(" ", el("span", { class: "badge typing", text: "typing…" }));
    if (x.state === "lobby" && !mt.ended) {
      const q = encodeURIComponent(mt.id);
      li.append(" ",
        el("button", { type: "button", onclick: () => act("meetings/" + q + "/admit", { user: x.key }, "Admitted " + who) },
          "Admit " + x.name),
        " ",
        el("button", { type: "button", onclick: () => act("meetings/" + q + "/reject", { user: x.key }, "Rejected " + who) },
          "Reject " + x.name));
    }
    return li;
  }

  function roster(part, list, mt, empty) {
    part.replaceChildren(...(list.length ? list.map((x) => memberItem(mt, x)) : [el("li", { class: "empty", text: empty })]));
  }

  function newCard(mt) {
    const id = mt.id, q = encodeURIComponent(id), uid = "m-" + id.replace(/[^\w-]/g, "_");
    const c = {};
    c.title = el("h3", { id: uid + "-title" });
    c.facts = el("p", { class: "facts" });
    c.lobby = el("ul", { class: "roster", "aria-labelledby": uid + "-lobby" });
    c.leaders = el("ul", { class: "roster", "aria-labelledby": uid + "-leaders" });
    c.attendees = el("ul", { class: "roster", "aria-labelledby": uid + "-attendees" });
    c.messages = el("ol", { class: "messages", "aria-labelledby": uid + "-messages", "aria-live": "polite" });

    c.as = el("select", { id: uid + "-as", name: "from" });
    c.text = el("input", { id: uid + "-text", name: "text", autocomplete: "off", required: "" });
    const sayForm = el("form", { class: "say", onsubmit: (ev) => {
      ev.preventDefault();
      const text = c.text.value;
      control("meetings/" + q + "/message", { from: c.as.value, text }).then(() => {
        if (c.text.value === text) c.text.value = ""; // unless more was typed meanwhile
        say(c.as.selectedOptions[0].textContent + " said: " + text);
      }, (err) => say("Refused: " + err.message));
    } },
    field("Speak as", c.as), field("Message", c.text, "wide"),
    el("button", { type: "submit", text: "Say" }),
    el("button", { type: "button", text: "Start typing", onclick: () =>
      act("meetings/" + q + "/typing", { from: c.as.value }, c.as.selectedOptions[0].textContent + " is typing") }));

    c.joinUser = el("input", { id: uid + "-join", name: "user", list: uid + "-users", autocomplete: "off", required: "" });
    c.joinName = el("input", { id: uid + "-join-name", name: "name", autocomplete: "off" });
    c.userList = el("datalist", { id: uid + "-users" });
    const joinForm = el("form", { class: "join", onsubmit: (ev) => {
      ev.preventDefault();
      const body = { user: c.joinUser.value.trim() };
      if (c.joinName.value.trim()) body.name = c.joinName.value.trim();
      control("meetings/" + q + "/join", body).then((r) => {
        if (c.joinUser.value.trim() === body.user) c.joinUser.value = c.joinName.value = "";
        say(body.user + " joined: " + (r.state === "lobby" ? "waiting in the lobby" : "in the meeting"));
      }, (err) => say("Refused: " + err.message));
    } },
    field("Join as (user)", c.joinUser, "wide"), c.userList, field("Display name (optional)", c.joinName),
    el("button", { type: "submit", text: "Join" }));

    c.inviteTo = el("select", { id: uid + "-invite", name: "to" });
    c.inviteText = el("input", { id: uid + "-invite-text", name: "message", autocomplete: "off" });
    const inviteForm = el("form", { class: "invite", onsubmit: (ev) => {
      ev.preventDefault();
      const body = { to: c.inviteTo.value };
      if (c.inviteText.value) body.message = c.inviteText.value;
      act("meetings/" + q + "/invite", body, "Invited " + body.to);
    } },
    field("Invite", c.inviteTo, "wide"), field("Invitation message (optional)", c.inviteText),
    el("button", { type: "submit", text: "Invite" }));

    c.end = el("button", { type: "button", class: "danger", text: "End the meeting", onclick: () =>
      act("meetings/" + q + "/end", {}, "Ended meeting " + id) });

    c.root = el("article", { class: "meeting", "aria-labelledby": uid + "-title" },
      c.title, c.facts,
      el("div", { class: "rosters" },
        el("div", {}, el("h4", { id: uid + "-lobby", text: "Lobby" }), c.lobby),
        el("div", {}, el("h4", { id: uid + "-leaders", text: "Leaders" }), c.leaders),
        el("div", {}, el("h4", { id: uid + "-attendees", text: "Attendees" }), c.attendees)),
      el("h4", { id: uid + "-messages", text: "Conversation" }), c.messages,
      sayForm, joinForm, inviteForm, el("p", {}, c.end));
    cards.set(id, c);
    document.getElementById("meetings").append(c.root);
    return c;
  }

  function drawMeeting(mt) {
    const c = cards.get(mt.id) || newCard(mt);
    c.title.textContent = (mt.subject || "Meeting") + " (" + mt.id + ")" + (mt.ended ? ": ended" : "");
    c.facts.textContent = "Organiser " + mt.organizer + (mt.lobby ? " · lobby on" : " · no lobby") + " · " + mt.uri;
    const members = mt.members || [];
    // a roster button pressed from the keyboard goes with its member: the
    // focus moves on to the next one in the lobby, or to "Speak as"
    const lost = c.lobby.contains(document.activeElement);
    roster(c.lobby, members.filter((x) => x.state === "lobby"), mt, "Nobody waits.");
    roster(c.leaders, members.filter((x) => x.state === "in" && x.role === "Leader"), mt, "No leader in.");
    roster(c.attendees, members.filter((x) => x.state === "in" && x.role !== "Leader"), mt, "No attendee in.");
    const present = members.filter((x) => x.state === "in");
    fill(c.as, present.map((x) => [x.key, x.name + (x.virtual ? "" : " (bot)")]));
    fill(c.inviteTo, model.users.map((u) => [u.username, u.name + " (" + u.username + ")"]));
    c.userList.replaceChildren(...model.users.map((u) => el("option", { value: u.username, text: u.name })));
    for (const e of c.root.querySelectorAll("button, input, select")) e.disabled = mt.ended;
    if (lost && !c.lobby.contains(document.activeElement)) (c.lobby.querySelector("button") || c.as).focus();
  }

  function addMessage(msg) {
    const c = msg.im ? imCard(msg.meeting) : cards.get(msg.meeting);
    const seen = model.messages.get(msg.meeting) || new Set();
    model.messages.set(msg.meeting, seen);
    if (!c || seen.has(msg.n)) return;
    seen.add(msg.n);
    c.messages.append(el("li", { class: msg.bot ? "from-bot" : "" },
      el("time", { text: clock(msg.time) }), " ",
      el("strong", { text: msg.name + (msg.bot ? " (bot)" : "") + ":" }), " ",
      el("span", { class: "text", text: msg.text })));
    c.messages.scrollTop = c.messages.scrollHeight;
  }

  // ---- people and instant messages ----------------------------------------

  function drawPeople() {
    const people = [...model.people.values()];
    const label = (p) => p.name + " (" + p.username + ")";
    document.getElementById("people").replaceChildren(...people.map((p) => el("li", { "data-user": p.username },
      el("span", { class: "who", text: label(p) }), " ",
      el("span", { class: "badge presence", "data-availability": p.availability, text: p.availability }),
      p.note ? el("span", { class: "note", text: " " + p.note }) : null)));
    fill(document.getElementById("im-from"), people.map((p) => [p.username, label(p)]));
    fill(document.getElementById("presence-user"), people.map((p) => [p.username, label(p)]));
    // who an IM reaches (an available application: a bot) first, and marked
    const to = [...people].sort((a, b) => b.reachable - a.reachable);
    fill(document.getElementById("im-to"), to.map((p) => [p.username, label(p) + (p.reachable ? " · bot" : "")]));
  }

  // The card of IM session `id` (made on its first view or message).
  function imCard(id) {
    let c = imCards.get(id);
    if (c) return c;
    const uid = "im-" + id.replace(/[^\w-]/g, "_");
    c = { title: el("h3", { id: uid + "-title", text: "IM (" + id + ")" }), facts: el("p", { class: "facts" }),
      messages: el("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" }) };
    c.root = el("article", { class: "im", "aria-labelledby": uid + "-title" }, c.title, c.facts, c.messages);
    imCards.set(id, c);
    const box = document.getElementById("ims");
    box.querySelector(".empty")?.remove();
    box.append(c.root);
    return c;
  }

  function drawIm(im) {
    const c = imCard(im.id);
    c.title.textContent = "IM: " + im.users.map((u) => u.name).join(" and ") + " (" + im.id + ")";
    const typing = im.members.filter((x) => x.typing).map((x) => x.name + " is typing…");
    c.facts.textContent = [im.state, ...typing].join(" · ");
  }

  function peopleForms() {
    const value = (id) => document.getElementById(id).value;
    const name = (id) => document.getElementById(id).selectedOptions[0]?.textContent;
    document.getElementById("im-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = document.getElementById("im-text"), text = input.value;
      control("users/" + encodeURIComponent(value("im-from")) + "/message", { to: value("im-to"), text }).then(() => {
        if (input.value === text) input.value = ""; // unless more was typed meanwhile
        say(name("im-from") + " sent an IM: " + text);
      }, (err) => say("Refused: " + err.message));
    });
    document.getElementById("im-typing").addEventListener("click", () => act("users/" +
      encodeURIComponent(value("im-from")) + "/typing", { to: value("im-to") }, name("im-from") + " is typing"));
    document.getElementById("presence-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const availability = value("presence-availability");
      act("users/" + encodeURIComponent(value("presence-user")) + "/presence", { availability },
        name("presence-user") + " is " + availability);
    });
  }

  // ---- applications -----------------------------------------------------

  const COUNTS = [["held", "P-GETs held"], ["sent", "batches sent"], ["events", "events"], ["acks", "acks"],
    ["resyncs", "resyncs"], ["resumes", "resumes"], ["dropped", "dropped"], ["replaced", "replaced"]];

  function drawApp(a) {
    const id = "app-" + a.id;
    const old = document.getElementById(id);
    const q = encodeURIComponent(a.id);
    const ch = a.channel || { counts: {}, lines: [] };
    const title = "Application " + a.id + ": " + (a.name || a.user) + " (" + a.user + ")";
    const status = a.gone ? "gone" : (a.pget ? "P-GET held now" : "no P-GET held now") +
      " · next batch " + a.next_ack + (a.unacked_batch ? " · a batch awaits its ack" : "") +
      " · " + a.queued + " queued" + (a.available ? " · available" : "");
    const card = el("article", { id, class: "app" + (a.gone ? " gone" : ""), "aria-label": title },
      el("h3", { text: title }),
      el("p", { class: "facts channel-state", text: status }),
      el("p", { class: "counts" }, ...COUNTS.map(([k, label]) =>
        el("span", { "data-count": k, text: label + " " + (ch.counts[k] || 0) }))),
      el("ol", { class: "channel", "aria-label": "Event channel of application " + a.id },
        ...ch.lines.map((l) => el("li", { "data-what": l.what }, el("time", { text: clock(l.time) }), " " + l.text))));
    if (a.invitations && a.invitations.length) {
      card.append(el("h4", { text: "Invitations" }), el("ul", { class: "invitations" },
        ...a.invitations.map((i) => el("li", { text: "#" + i.n + " " + i.direction.toLowerCase() +
          (i.from && i.direction === "Incoming" ? " from " + i.from : "") + " · " + i.meeting + " · " + i.state +
          " (conversation " + i.conversation + ")" }))));
    }
    if (!a.gone) {
      const button = (action, label, done) => el("button", { type: "button", text: label, onclick: () =>
        act("apps/" + q + "/" + action, {}, done + " application " + a.id) });
      card.append(el("p", { class: "actions" },
        button("resync", "Resync its channel", "Resync for"), " ",
        button("resume", "Resume (reset)", "Resume for"), " ",
        button("expire", "Expire it", "Expired"), " ",
        button("forget", "Forget it", "Forgot")));
    }
    // keep the focus on the same button across the redraw
    const focused = old && old.contains(document.activeElement) ? document.activeElement.textContent : null;
    if (old) old.replaceWith(card); else {
      const list = document.getElementById("apps");
      const empty = list.querySelector(".empty");
      if (empty) empty.remove();
      list.append(card);
    }
    if (focused) for (const b of card.querySelectorAll("button")) if (b.textContent === focused) b.focus();
    const log = card.querySelector(".channel");
    log.scrollTop = log.scrollHeight; // the newest line in view
  }

  // ---- faults and the rest -----------------------------------------------

  function drawFaults(f) {
    const items = [];
    if (f.drop_pget > 0) items.push("drop the next " + f.drop_pget + " P-GET answer(s)");
    if (f.delay) items.push("delay the next " + f.delay.count + " answer(s) by " + f.delay.seconds + " s");
    for (const x of f.failures || []) items.push(x.kind + (x.status ? " " + x.status : "") + " for the next " +
      x.count + " request(s)" + (x.match ? " matching " + x.match : ""));
    const list = document.getElementById("armed");
    list.replaceChildren(...(items.length ? items : ["Nothing armed."]).map((t) => el("li", { text: t })));
  }

  function drawWhere(listen) {
    const urls = listen.map((h) => h.url + (h.http_url ? " and " + h.http_url : "") +
      (h.name !== h.address ? " (on " + h.address + ")" : ""));
    const loopback = listen.every((h) => /^127\./.test(h.address));
    document.getElementById("where").textContent = "Served by ucwa-sim at " + urls.join(", ") +
      ": the console listens only where the control API listens" + (loopback ? " (loopback addresses only)." :
      ". These are not all loopback addresses: whoever reaches them can drive the simulator.");
  }

  function apply(ch) {
    if (ch.kind === "meeting") { model.meetings.set(ch.meeting.id, ch.meeting); drawMeeting(ch.meeting); }
    else if (ch.kind === "app") { model.apps.set(ch.app.id, ch.app); drawApp(ch.app); }
    else if (ch.kind === "faults") drawFaults(ch.faults);
    else if (ch.kind === "message") addMessage(ch.message);
    else if (ch.kind === "im") drawIm(ch.im);
    else if (ch.kind === "person") { model.people.set(ch.person.username, ch.person); drawPeople(); }
  }

  async function loadState() {
    const r = await fetch("/_sim/console/state", { cache: "no-store" });
    const s = await r.json();
    model.seq = s.seq;
    model.users = s.users;
    drawWhere(s.listen);
    for (const mt of s.meetings) apply({ kind: "meeting", meeting: mt });
    for (const a of s.apps) apply({ kind: "app", app: a });
    for (const p of s.people) model.people.set(p.username, p);
    drawPeople();
    for (const im of s.ims) drawIm(im);
    drawFaults(s.faults);
    for (const msg of s.messages) addMessage(msg);
  }

  function live(text) {
    document.getElementById("live").textContent = text;
  }

  const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

  // The stream: each answer holds the changes after model.seq (or a reset).
  async function stream() {
    live("Live: changes appear as they happen.");
    for (;;) {
      try {
        const r = await fetch("/_sim/console/events?after=" + model.seq, { cache: "no-store" });
        const data = await r.json();
        if (!r.ok) { live("Waiting: " + data.error); await sleep(5000); continue; }
        live("Live: changes appear as they happen.");
        if (data.reset) { await loadState(); continue; }
        for (const ch of data.changes) apply(ch);
        model.seq = data.seq;
      } catch (err) {
        live("The simulator does not answer (" + err.message + "); trying again…");
        await sleep(2000);
      }
    }
  }

  function faultForms() {
    for (const form of document.querySelectorAll("form[data-fault]")) {
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const kind = form.dataset.fault, body = {};
        for (const input of form.querySelectorAll("input")) body[input.name] = Number(input.value);
        const path = kind === "expire-tokens" ? "tokens/expire" : "faults/" + kind;
        act(path, body, form.querySelector("button").textContent + ": done");
      });
    }
  }

  faultForms();
  peopleForms();
  loadState().then(stream, (err) => live("Cannot read the simulator's state: " + err.message));
})();
