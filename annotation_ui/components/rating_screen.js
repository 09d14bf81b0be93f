// The rater's screen as one measuring instrument (ITU-T P.910 / P.808, ITU-R BT.500):
// the stimulus on a mid-grey surround at one stimulus pixel per device pixel (scaled down only when
// it cannot fit, and the factor is sent with the vote), and five identical level buttons beside it,
// all inside the viewport. Videos play once from the start without controls or seeking; the levels
// open when the clip has ended. Keys 1-5 press the level buttons.
//
// Python sends `data` (see rating_screen.py); the screen answers with trigger events:
//   vote {key, level, scale, viewport, dpr, zoom, played}, next {key}, undo {key}, signout {key}.

const LEVEL_KEYS = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5 };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // never innerHTML: texts come from users
  return node;
}

function zoomEstimate() {
  // Browser zoom: the page's CSS pixels per screen pixel differ from 1 when zoomed. outerWidth
  // over innerWidth tracks it on desktop browsers (a side panel or devtools make it larger).
  const vv = window.visualViewport;
  const pinch = vv ? vv.scale : 1;
  const outer = window.outerWidth && window.innerWidth ? window.outerWidth / window.innerWidth : 1;
  return Math.round(pinch * outer * 100) / 100;
}

function build(parent) {
  const root = el("div", "qa-screen");
  root.setAttribute("data-testid", "qalign-screen");
  const stage = el("div", "qa-stage");
  stage.setAttribute("data-testid", "qalign-stage");
  const frame = el("div", "qa-frame");
  const overlay = el("div", "qa-overlay");
  overlay.setAttribute("data-testid", "qalign-overlay");
  stage.append(frame, overlay);

  const panel = el("aside", "qa-panel");
  const head = el("div", "qa-head");
  const question = el("p", "qa-question");
  question.setAttribute("data-testid", "qalign-question");
  const caption = el("p", "qa-caption");
  head.append(question, caption);
  const scale = el("div", "qa-scale");
  scale.setAttribute("role", "group");
  const hint = el("p", "qa-hint");
  hint.setAttribute("data-testid", "qalign-hint");
  const replay = el("button", "qa-small qa-replay", "Play the video again");
  replay.type = "button";
  const next = el("button", "qa-small qa-next", "Next example");
  next.type = "button";
  const message = el("p", "qa-message");
  message.setAttribute("role", "status");
  message.setAttribute("data-testid", "qalign-message");
  const progress = el("div", "qa-progress");
  const bar = el("div", "qa-bar");
  const fill = el("div", "qa-fill");
  bar.append(fill);
  const progressText = el("span", "qa-progress-text");
  progressText.setAttribute("data-testid", "qalign-progress");
  progress.append(bar, progressText);
  const undo = el("button", "qa-small qa-undo", "Undo last vote");
  undo.type = "button";
  const foot = el("div", "qa-foot");
  const who = el("span", "qa-who");
  const signout = el("button", "qa-link", "Sign out");
  signout.type = "button";
  foot.append(who, signout);
  panel.append(head, scale, hint, replay, next, message, progress, undo, foot);
  root.append(stage, panel);
  parent.appendChild(root);

  const ui = { root, stage, frame, overlay, question, caption, scale, hint, replay, next, message, progress, fill,
    progressText, undo, who, signout, buttons: [], media: null, state: null, send: null, data: null };
  root.qa = ui;

  const emit = (event, extra) => {
    if (!ui.data || !ui.send) return;
    ui.send(event, Object.assign({ key: ui.data.key }, extra || {}));
  };
  ui.vote = (level) => {
    const s = ui.state;
    if (!s || !s.open || s.sent) return;
    s.sent = true;
    setButtons(ui);
    emit("vote", {
      level,
      scale: s.scale,
      viewport: [window.innerWidth, window.innerHeight],
      dpr: window.devicePixelRatio || 1,
      zoom: zoomEstimate(),
      played: s.played,
    });
  };
  next.addEventListener("click", () => {
    const s = ui.state;
    if (!s || !s.open || s.sent) return;
    s.sent = true;
    setButtons(ui);
    emit("next");
  });
  undo.addEventListener("click", () => {
    if (ui.state && !ui.state.sent) {
      ui.state.sent = true;
      setButtons(ui);
      emit("undo");
    }
  });
  signout.addEventListener("click", () => emit("signout"));
  replay.addEventListener("click", () => startVideo(ui, true));
  window.addEventListener("resize", () => layout(ui));
  return ui;
}

function makeButtons(ui, labels) {
  ui.scale.replaceChildren();
  ui.buttons = labels.map((label, i) => {
    const level = 5 - i;
    const button = el("button", "qa-level");
    button.type = "button";
    button.dataset.level = String(level);
    button.setAttribute("data-testid", "qalign-level");
    button.append(el("span", "qa-label", label), el("kbd", "qa-key", String(level)));
    button.setAttribute("aria-label", label);
    button.setAttribute("aria-keyshortcuts", String(level));
    button.addEventListener("click", () => ui.vote(level));
    ui.scale.appendChild(button);
    return button;
  });
  ui.labelsKey = JSON.stringify(labels);
}

function setButtons(ui) {
  const s = ui.state;
  const d = ui.data;
  const open = !!(s && s.open && !s.sent && d.mode === "rate");
  for (const button of ui.buttons) {
    button.disabled = !open;
    // Training shows which level the example stands for; nothing is emphasised while rating.
    button.classList.toggle("qa-example", d.mode === "train" && Number(button.dataset.level) === d.example_level);
  }
  ui.next.disabled = !(s && s.open && !s.sent);
  ui.undo.disabled = !(d.can_undo && s && !s.sent);
}

// ----------------------------------------------------------------------------- sizing

function layout(ui) {
  const root = ui.root;
  // The screen fills the viewport below wherever the page put it: nothing to scroll to.
  const top = root.getBoundingClientRect().top + window.scrollY;
  root.style.height = Math.max(320, window.innerHeight - top) + "px";
  const media = ui.media;
  const s = ui.state;
  if (!media || !s) return;
  const natW = media.naturalWidth || media.videoWidth;
  const natH = media.naturalHeight || media.videoHeight;
  if (!natW || !natH) return;
  const dpr = window.devicePixelRatio || 1;
  // One stimulus pixel per device pixel: CSS size = natural size / devicePixelRatio.
  const oneW = natW / dpr;
  const oneH = natH / dpr;
  const boxW = ui.stage.clientWidth;
  const boxH = ui.stage.clientHeight;
  let w = oneW;
  let h = oneH;
  let fits = oneW <= boxW + 0.01 && oneH <= boxH + 0.01;
  if (!fits) {
    const k = Math.min(boxW / oneW, boxH / oneH);
    w = Math.floor(oneW * k);
    h = Math.floor(oneH * k);
  }
  media.style.width = w + "px";
  media.style.height = h + "px";
  s.scale = Math.round(((w * dpr) / natW) * 10000) / 10000;
  s.fits = fits;
  const refuse = !fits && ui.data.oversize === "refuse";
  s.refused = refuse;
  ui.frame.style.visibility = refuse ? "hidden" : "";
  ui.root.dataset.scale = String(s.scale);
  openIfReady(ui);
  showHint(ui);
}

// ----------------------------------------------------------------------------- video

function startVideo(ui, again) {
  const video = ui.media;
  const s = ui.state;
  if (!video || video.tagName !== "VIDEO") return;
  if (again) {
    if (!s.played || s.replaysLeft === 0) return;
    if (s.replaysLeft > 0) s.replaysLeft -= 1;
    s.open = false;
    s.watched = 0;
    s.allowed = 0;
    s.last = 0;
    s.playing = true;
    video.currentTime = 0;
    setButtons(ui);
    showHint(ui);
  }
  const started = video.play();
  if (started && started.catch) {
    started.catch(() => {
      // Autoplay refused (a clip with sound, or a browser policy): a click may start it.
      s.needsClick = true;
      showHint(ui);
    });
  }
}

function wireVideo(ui, video) {
  const s = ui.state;
  video.addEventListener("loadedmetadata", () => {
    s.duration = video.duration;
    layout(ui);
  });
  video.addEventListener("playing", () => {
    s.needsClick = false;
    video.style.visibility = "visible";
    showHint(ui);
  });
  video.addEventListener("timeupdate", () => {
    if (video.seeking) return;
    const t = video.currentTime;
    const step = t - s.last;
    if (step > 0 && step < 0.75) s.watched += step; // time actually played, not jumped over
    s.last = t;
    s.allowed = t;
  });
  video.addEventListener("seeking", () => {
    // Nobody may seek: put the playhead back where playback had got to.
    if (Math.abs(video.currentTime - s.allowed) > 0.25) video.currentTime = s.allowed;
  });
  video.addEventListener("ratechange", () => {
    if (video.playbackRate !== 1) video.playbackRate = 1;
  });
  video.addEventListener("pause", () => {
    if (!video.ended && !s.played && document.visibilityState === "visible") video.play().catch(() => {});
  });
  video.addEventListener("ended", () => {
    const full = !s.duration || s.watched >= s.duration * 0.9;
    if (!full) {
      video.currentTime = s.allowed;
      video.play().catch(() => {});
      return;
    }
    s.played = true;
    s.playing = false;
    video.style.visibility = "hidden"; // mid-grey after the clip, while the vote is taken
    openIfReady(ui);
    showHint(ui);
  });
  video.addEventListener("contextmenu", (e) => e.preventDefault());
}

// ----------------------------------------------------------------------------- state

function openIfReady(ui) {
  const s = ui.state;
  const ready = s.loaded && !s.refused && (s.kind !== "video" || (s.played && !s.playing));
  if (ready !== s.open) {
    s.open = ready;
    setButtons(ui);
  }
}

function showHint(ui) {
  const s = ui.state;
  const d = ui.data;
  let text = "";
  if (s.refused) {
    text = "This window is too small to show the " + d.kind + " at its true size. Make the browser window " +
      "larger (full screen: F11) or reset the browser zoom (Ctrl+0).";
  } else if (s.kind === "video" && s.needsClick) {
    text = "Click the grey area to start the video.";
  } else if (s.kind === "video" && !s.played) {
    text = d.mode === "rate" ? "The buttons open when the video has ended." : "Watch the video to the end.";
  } else if (s.kind === "video" && d.mode === "rate" && !s.playing && !s.sent) {
    text = "The video has ended: rate it now.";
  }
  ui.hint.textContent = text;
  ui.hint.hidden = !text;
  const canReplay = s.kind === "video" && s.played && !s.playing && s.replaysLeft !== 0 && !s.sent;
  ui.replay.hidden = !canReplay;
}

function showStimulus(ui, d) {
  ui.frame.replaceChildren();
  const s = {
    key: d.key, kind: d.kind, open: false, sent: false, loaded: false, played: false, playing: false,
    scale: 1, fits: true, refused: false, watched: 0, allowed: 0, last: 0, duration: 0, needsClick: false,
    replaysLeft: d.replay === "free" ? -1 : d.replay === "once" ? 1 : 0,
  };
  ui.state = s;
  let media;
  if (d.kind === "video") {
    media = document.createElement("video");
    media.muted = d.audio !== "sound";
    media.playsInline = true;
    media.controls = false;
    media.disablePictureInPicture = true;
    media.setAttribute("disableremoteplayback", "");
    media.setAttribute("controlslist", "nodownload noplaybackrate noremoteplayback nofullscreen");
    media.preload = "auto";
    media.style.visibility = "hidden"; // mid-grey until the first frame plays
    wireVideo(ui, media);
    media.addEventListener("loadeddata", () => {
      s.loaded = true;
      s.playing = true;
      layout(ui);
      startVideo(ui, false);
    });
    ui.stage.onclick = () => {
      if (s.needsClick) startVideo(ui, false);
    };
  } else {
    media = document.createElement("img");
    media.alt = "";
    media.draggable = false;
    media.style.visibility = "hidden";
    media.addEventListener("load", () => {
      s.loaded = true;
      layout(ui);
      media.style.visibility = "visible";
    });
    ui.stage.onclick = null;
  }
  media.className = "qa-stimulus";
  media.setAttribute("data-testid", "qalign-stimulus");
  ui.media = media;
  ui.frame.appendChild(media);
  media.src = d.src;
  if (d.trap) ui.overlay.textContent = d.trap;
  ui.overlay.hidden = !d.trap;
}

function update(ui, d, send) {
  ui.send = send;
  ui.data = d;
  if (ui.labelsKey !== JSON.stringify(d.labels)) makeButtons(ui, d.labels);
  ui.question.textContent = d.question || "";
  ui.caption.textContent = d.caption || "";
  ui.caption.hidden = !d.caption;
  ui.message.textContent = d.message ? d.message.text : "";
  ui.message.className = "qa-message" + (d.message ? " qa-" + d.message.kind : "");
  ui.message.hidden = !d.message;
  ui.progressText.textContent = d.progress ? d.progress.text : "";
  ui.fill.style.width = d.progress ? Math.round(d.progress.fraction * 100) + "%" : "0";
  ui.progress.hidden = !d.progress;
  ui.undo.hidden = d.mode !== "rate" || !d.offer_undo;
  ui.next.hidden = d.mode !== "train";
  ui.next.textContent = d.next_label || "Next example";
  ui.who.textContent = d.who || "";
  ui.root.dataset.mode = d.mode;
  if (!ui.state || ui.state.key !== d.key) {
    showStimulus(ui, d);
  } else {
    ui.state.sent = false; // the same item again: the last answer was refused or taken back
  }
  setButtons(ui);
  showHint(ui);
  layout(ui);
}

// ----------------------------------------------------------------------------- keys

function onKey(event) {
  if (event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
  const level = LEVEL_KEYS[event.key];
  const ui = window.__qalignScreen;
  if (!level || !ui || !ui.root.isConnected || ui.data.mode !== "rate") return;
  const button = ui.buttons.find((b) => Number(b.dataset.level) === level);
  if (button && !button.disabled) {
    event.preventDefault();
    button.click();
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let root = parentElement.querySelector(".qa-screen");
  const ui = root ? root.qa : build(parentElement);
  window.__qalignScreen = ui;
  if (!window.__qalignKeys) {
    window.__qalignKeys = onKey;
    document.addEventListener("keydown", onKey);
  }
  update(ui, data, setTriggerValue);
  return () => {
    if (window.__qalignScreen === ui) window.__qalignScreen = null;
  };
}
