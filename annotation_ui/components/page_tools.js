// Small page tools of the rater's flow, chosen by `data.tool`:
//   "measure": report the browser's screen (window inner size in CSS pixels, device pixel ratio and
//              zoom) once on load and again on "Check again" (trigger "measured");
//   "redirect": send the browser to `data.url` (a crowd platform's completion page);
//   "post":     submit a form with `data.fields` to `data.url` (MTurk's externalSubmit) on a click.

function zoomEstimate() {
  // outerWidth / innerWidth follows the browser zoom on desktop browsers; visualViewport.scale adds
  // a pinch zoom. Rounded to whole per cent.
  const vv = window.visualViewport;
  const pinch = vv ? vv.scale : 1;
  const outer = window.outerWidth && window.innerWidth ? window.outerWidth / window.innerWidth : 1;
  return Math.round(pinch * outer * 100) / 100;
}

function measure() {
  return {
    width: window.innerWidth,
    height: window.innerHeight,
    dpr: window.devicePixelRatio || 1,
    zoom: zoomEstimate(),
    screen: [window.screen.width, window.screen.height],
  };
}

function button(parent, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = "qa-tool-button";
  parent.appendChild(b);
  return b;
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  // A box of its own, emptied on every redraw (the component's style sheet stays in place).
  let box = parentElement.querySelector(".qa-tool");
  if (!box) {
    box = document.createElement("div");
    box.className = "qa-tool";
    parentElement.appendChild(box);
  }
  box.replaceChildren();
  if (data.tool === "measure") {
    const again = button(box, data.label || "Check again");
    again.addEventListener("click", () => setTriggerValue("measured", measure()));
    if (data.auto && window.__qalignMeasured !== data.key) {
      window.__qalignMeasured = data.key; // once per check screen, not on every redraw
      setTriggerValue("measured", measure());
    }
  } else if (data.tool === "redirect") {
    const link = document.createElement("a");
    link.href = data.url;
    link.textContent = data.label || data.url;
    link.target = "_top";
    box.appendChild(link);
    if (data.auto) window.setTimeout(() => window.top.location.assign(data.url), data.delay_ms || 0);
  } else if (data.tool === "post") {
    const form = document.createElement("form");
    form.method = "POST";
    form.action = data.url;
    form.target = "_top";
    for (const [name, value] of Object.entries(data.fields || {})) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    box.appendChild(form);
    button(box, data.label || "Submit").addEventListener("click", () => form.submit());
  }
}
