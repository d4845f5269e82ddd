// The Live tab's client (motion/app/live.py describes the protocol): the microphone through an
// AudioWorklet in 40 ms messages of 16-bit PCM over a WebSocket; each frame that comes back is
// decoded off the main thread (createImageBitmap) and drawn on the canvas as it arrives — the
// server paces frames at 25 per second, so drawing on arrival adds no burst and no latency.
// Run by Gradio as the player component's js_on_load (`element` is the component).
(() => {
  const CHUNK_SECONDS = 0.04;
  const MAX_BUFFERED_BYTES = 64000;   // ~2 s of audio unsent: the network is behind, drop audio
  const KEEP = 3000;                  // latencies and draw times kept for the statistics
  const canvas = element.querySelector("canvas");
  const draw = canvas.getContext("2d");
  const line = element.querySelector(".live-line");

  const worklet = `
    class MsyncPcm extends AudioWorkletProcessor {
      constructor() { super(); this.size = Math.round(sampleRate * ${CHUNK_SECONDS});
                      this.buf = new Int16Array(this.size); this.n = 0; }
      process(inputs) {
        const channel = inputs[0] && inputs[0][0];
        if (channel) for (let i = 0; i < channel.length; i++) {
          const v = Math.max(-1, Math.min(1, channel[i]));
          this.buf[this.n++] = v < 0 ? v * 32768 : v * 32767;
          if (this.n === this.size) {
            this.port.postMessage(this.buf.buffer, [this.buf.buffer]);
            this.buf = new Int16Array(this.size); this.n = 0;
          }
        }
        return true;
      }
    }
    registerProcessor("msync-pcm", MsyncPcm);`;

  let s = null;      // the current stream's state

  function fresh() {
    return { ws: null, mic: null, audio: null, node: null, lookahead: 0, header: 28, sentSamples: 0,
             sends: [], lastIndex: -1, ended: false, error: null, droppedAudio: 0,
             serverDroppedSamples: 0, serverDroppedFrames: 0, rate: 16000,
             stats: { received: 0, drawn: 0, skipped: 0, latency: [], latencyAudio: [],
                      serverMs: [], computeMs: [], decodeMs: [], drawTimes: [], hashes: 0,
                      started: performance.now() } };
  }

  function say(text) { line.textContent = text; }

  function fail(message) {
    say("Error: " + message);
    if (!s) return;
    s.error = message;
    release();
    if (s.ws) s.ws.close();
  }

  function release() {
    if (!s) return;
    if (s.mic) s.mic.getTracks().forEach((t) => t.stop());
    if (s.audio) s.audio.close().catch(() => {});
    s.mic = s.audio = s.node = null;
  }

  function median(values) {
    if (!values.length) return NaN;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  }

  function fps() {
    const now = performance.now(), times = s.stats.drawTimes;
    let n = 0;
    for (let i = times.length - 1; i >= 0 && times[i] > now - 1000; i--) n++;
    return n;
  }

  function keep(list, value) { list.push(value); if (list.length > KEEP) list.shift(); }

  function report(final) {
    if (!s || s.error) return;
    const st = s.stats;
    const lat = median(st.latencyAudio.slice(-50)) / 1000;
    const dropped = s.droppedAudio + s.serverDroppedSamples / s.rate;
    say(`${final ? "Stopped" : "Live"}: ${st.drawn} frames drawn` +
        (final ? "" : `, ${fps()} fps`) +
        (isNaN(lat) ? "" : `; latency ${lat.toFixed(2)} s (look-ahead ` +
                           `${(s.lookahead / 1000).toFixed(2)} s)`) +
        (dropped > 0 || s.serverDroppedFrames > 0
          ? `; behind: dropped ${dropped.toFixed(1)} s of audio, ` +
            `${s.serverDroppedFrames} frames` : "") + ".");
  }

  // The Start button, while the user's click still counts (the audio context may start).
  async function prepare() {
    stop(true);
    s = fresh();
    const mine = s;
    say("Starting: opening the microphone and preparing the photo…");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia ||
        !window.AudioWorkletNode) {
      fail("this page cannot use the microphone here: open it as http://localhost or over https");
      return;
    }
    try {
      // The speech as recorded, as an uploaded file is: the model never heard a browser's
      // gain control, noise suppression or echo cancellation (and nothing is played back).
      const mic = await navigator.mediaDevices.getUserMedia({ audio: {
        channelCount: 1, echoCancellation: false, noiseSuppression: false,
        autoGainControl: false } });
      if (s !== mine) { mic.getTracks().forEach((t) => t.stop()); return; }
      s.mic = mic;
      let audio;
      try { audio = new AudioContext({ sampleRate: 16000 }); }
      catch (e) { audio = new AudioContext(); }          // the server resamples any rate
      s.audio = audio;
      s.rate = audio.sampleRate;
      const url = URL.createObjectURL(new Blob([worklet], { type: "text/javascript" }));
      await audio.audioWorklet.addModule(url);
      URL.revokeObjectURL(url);
      if (s !== mine) return;
      const node = new AudioWorkletNode(audio, "msync-pcm");
      const silent = audio.createGain();
      silent.gain.value = 0;                              // pulled by the graph, never heard
      audio.createMediaStreamSource(mic).connect(node);
      node.connect(silent).connect(audio.destination);
      node.port.onmessage = (event) => send(mine, event.data);
      s.node = node;
      await audio.resume();
    } catch (e) {
      if (s === mine) fail("no microphone: " + (e && e.message ? e.message : e));
    }
  }

  function send(mine, buffer) {
    if (s !== mine || !s.ws || s.ws.readyState !== WebSocket.OPEN || s.ended) return;
    if (s.ws.bufferedAmount > MAX_BUFFERED_BYTES) {       // bounded: drop, and say so
      s.droppedAudio += buffer.byteLength / 2 / s.rate;
      return;
    }
    const message = new Uint8Array(8 + buffer.byteLength);
    const now = performance.now();
    new DataView(message.buffer).setFloat64(0, now, true);
    message.set(new Uint8Array(buffer), 8);
    s.ws.send(message.buffer);
    s.sentSamples += buffer.byteLength / 2;
    keep(s.sends, [s.sentSamples, now]);
  }

  // When the page sent the audio that ends at `seconds` into the stream.
  function sentAt(seconds) {
    const sample = seconds * s.rate;
    for (const [n, t] of s.sends) if (n >= sample) return t;
    return NaN;
  }

  // The Start handler's answer: {"ticket": …} or {"error": …}.
  function start(answer) {
    if (!s || s.error || s.ended) return;
    let parsed = {};
    try { parsed = JSON.parse(answer || "{}"); } catch (e) { parsed = { error: String(answer) }; }
    if (parsed.error || !parsed.ticket) {
      fail(parsed.error || "the server did not start the stream");
      return;
    }
    const mine = s;
    const url = new URL("msync/live", document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = `?ticket=${encodeURIComponent(parsed.ticket)}&rate=${s.rate}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    s.ws = ws;
    ws.onmessage = (event) => { if (s === mine) receive(event.data); };
    ws.onclose = () => {
      if (s !== mine) return;
      if (!s.ended && !s.error) fail("the connection to the server closed");
      release();
    };
    ws.onerror = () => {
      if (s === mine && !s.error && !s.ended) fail("the connection to the server failed");
    };
  }

  function receive(data) {
    if (typeof data === "string") {
      const message = JSON.parse(data);
      if (message.type === "ready") {
        s.lookahead = message.lookahead_ms;
        s.header = message.header_bytes;
        canvas.width = canvas.height = message.size;
        say(`Live: listening (the first frames come ${(s.lookahead / 1000).toFixed(1)} s after the speech).`);
      } else if (message.type === "error") {
        fail(message.message);
      } else if (message.type === "end") {
        s.ended = true;
        report(true);
        s.ws.close();
      }
      return;
    }
    const view = new DataView(data);       // motion/app/live.py FRAME_HEADER: <IdffII
    const meta = { index: view.getUint32(0, true), sent: view.getFloat64(4, true),
                   serverMs: view.getFloat32(12, true), computeMs: view.getFloat32(16, true),
                   arrived: performance.now() };
    s.serverDroppedSamples = view.getUint32(20, true);
    s.serverDroppedFrames = view.getUint32(24, true);
    s.stats.received++;
    const mine = s;
    createImageBitmap(new Blob([new Uint8Array(data, s.header)], { type: "image/jpeg" }))
      .then((bitmap) => {
        if (s !== mine || meta.index <= s.lastIndex) { s.stats.skipped++; bitmap.close(); return; }
        draw.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
        bitmap.close();
        const now = performance.now(), st = s.stats;
        s.lastIndex = meta.index;
        st.drawn++;
        keep(st.drawTimes, now);
        keep(st.decodeMs, now - meta.arrived);
        keep(st.serverMs, meta.serverMs);
        keep(st.computeMs, meta.computeMs);
        // the audio of frame i ends 40 (i + 1) ms into the stream; the close's frames
        // (sent < 0) waited for Stop, not for their look-ahead: not counted
        if (meta.sent >= 0) {
          keep(st.latency, now - meta.sent);
          const spoken = sentAt((meta.index + 1) / 25);
          if (!isNaN(spoken)) keep(st.latencyAudio, now - spoken);
        }
        // a frame decoded after the stream's end updates the final line, never "Live" again
        if (s.ended) report(true);
        else if (st.drawn % 12 === 0) report(false);
      })
      .catch((e) => { console.log("msync live: frame not drawn", e); if (s === mine) s.stats.skipped++; });
  }

  // The Stop button: the microphone closes now; the last frames (the look-ahead's) still come.
  function stop(silent) {
    if (!s) return;
    const mine = s;
    release();
    if (silent) { s.ended = true; if (s.ws) s.ws.close(); return; }
    if (s.ws && s.ws.readyState === WebSocket.OPEN && !s.ended) {
      s.ws.send("stop");
      say("Stopping: the last frames are coming…");
      setTimeout(() => { if (mine.ws && !mine.ended) mine.ws.close(); }, 10000);
    } else if (s.ws) {
      s.ended = true;
      s.ws.close();
    } else if (!s.error) {
      s.ended = true;
      say("Stopped.");
    }
  }

  // Loaded again (the component re-mounted): the earlier instance's stream ends first.
  if (window.msyncLive) window.msyncLive.stop(true);
  window.addEventListener("pagehide", () => { if (s && s.ws) s.ws.close(); });
  window.msyncLive = { prepare, start, stop, get state() { return s; },
                       snapshot() { return canvas.toDataURL("image/png"); } };
})();
