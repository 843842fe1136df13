// The trial page: the architecture as a strip of layers, values, metrics, profile, learning curve
// and the exported PyTorch code. A running trial is refreshed every 2 s until it finishes.
'use strict';

(() => {
  const { el, fmt, badge, paths, getJSON } = MX;
  const { study, number } = MX.route();
  const $ = (id) => document.getElementById(id);
  const api = paths.api(study, `/trials/${number}`);

  MX.header([[study, paths.study(study)], [`trial #${number}`, null]]);
  document.title = `#${number} · ${study} · mixnas dashboard`;
  $('title').textContent = `Trial #${number}`;

  // -- architecture strip -----------------------------------------------------------------------

  function paramText(params) {
    return Object.entries(params || {})
      .filter(([key, value]) => key !== 'branches' && value !== null && typeof value !== 'object')
      .map(([key, value]) => `${key}=${typeof value === 'number' ? Number(value.toPrecision(4)) : value}`)
      .join(' · ');
  }

  function mixerBox(mixer, role) {
    const fam = MX.family(mixer.type);
    if (mixer.type === 'parallel') {
      const branches = (mixer.params.branches || []).map((b) => mixerBox(b, 'branch'));
      return el('div', { class: `mixer ${role} parallel`, 'data-type': 'parallel' },
        el('div', { class: 'name' }, 'parallel'),
        el('div', { class: 'params' }, paramText(mixer.params)),
        el('div', { class: 'branches' }, branches));
    }
    const color = fam === 'none' ? null : MX.mixerColor(mixer.type);
    return el('div', {
      class: `mixer ${role} ${fam === 'none' ? 'none' : ''}`, 'data-type': mixer.type,
      title: `${mixer.type} (${MX.keyLabel(MX.mixerKey(mixer.type))})`, style: color ? { background: color } : null,
    }, el('div', { class: 'name' }, fam === 'none' ? 'no channel mixer' : mixer.type),
    el('div', { class: 'params' }, paramText(mixer.params)));
  }

  function renderArchitecture(arch) {
    if (!arch) {
      $('strip').replaceChildren(el('div', { class: 'empty' }, 'This trial has no architecture.'));
      return;
    }
    const item = (label, value) => el('span', {}, `${label} `, el('b', {}, value));
    $('arch-meta').replaceChildren(item('d_model', arch.d_model), item('layers', arch.layers.length),
      item('norm', arch.norm), item('embeddings', arch.tie_embeddings ? 'tied' : 'untied'));
    const layers = arch.layers.map((layer, i) => el('div', { class: 'layer' },
      el('div', { class: 'idx' }, `layer ${i}`),
      mixerBox(layer.token_mixer, 'token'), mixerBox(layer.channel_mixer, 'channel')));
    $('strip').replaceChildren(el('div', { class: 'io' }, 'embedding'), ...layers,
      el('div', { class: 'io' }, `${arch.norm} norm → LM head`));
    const used = new Map();  // legend key -> a mixer type of that key
    const visit = (m) => (m.type === 'parallel' ? (m.params.branches || []).forEach(visit)
      : used.set(MX.mixerKey(m.type), m.type));
    arch.layers.forEach((l) => { visit(l.token_mixer); visit(l.channel_mixer); });
    used.delete('none');
    $('legend').replaceChildren(...[...used].map(([key, type]) => el('span', {},
      el('i', { style: { background: MX.mixerColor(type) } }), MX.keyLabel(key))));
  }

  // -- tables -----------------------------------------------------------------------------------

  function flatten(tree, prefix = '', out = []) {
    for (const [key, value] of Object.entries(tree || {})) {
      if (value && typeof value === 'object' && !Array.isArray(value)) flatten(value, `${prefix}${key}.`, out);
      else out.push([`${prefix}${key}`, Array.isArray(value) ? JSON.stringify(value) : value]);
    }
    return out;
  }

  function kvTable(pairs, empty) {
    if (!pairs.length) return el('div', { class: 'empty' }, empty);
    return el('table', { class: 'kv' }, el('tbody', {},
      pairs.map(([k, v]) => el('tr', {}, el('td', {}, k), el('td', { class: 'num' }, v instanceof Node ? v : fmt(v))))));
  }

  function renderTrial(t) {
    const badges = [badge(t.state)];
    if (t.on_front) badges.push(badge('Pareto-optimal', 'front'));
    if (t.baseline) badges.push(badge(`baseline: ${t.baseline}`, 'baseline'));
    $('badges').replaceChildren(...badges);
    $('hash').textContent = t.arch_hash ? `arch ${t.arch_hash}` : '';
    $('failure').replaceChildren(t.failure_reason
      ? el('div', { class: 'notice error', style: { marginBottom: '16px' } }, el('b', {}, `${t.state}: `), t.failure_reason)
      : '');
    $('values').replaceChildren(...t.objectives.map((o) => el('div', { class: 'stat' },
      el('div', { class: 'label' }, MX.objectiveLabel(o)),
      el('div', { class: 'value' }, fmt((t.values || {})[o.name])))));
    renderArchitecture(t.arch);
    $('metrics').replaceChildren(kvTable(flatten(t.metrics), 'No metrics recorded.'));
    $('profile').replaceChildren(kvTable(flatten(t.profile), 'No profile recorded.'));
    const seconds = t.finished_at ? (new Date(t.finished_at) - new Date(t.started_at)) / 1000 : null;
    $('decisions').replaceChildren(kvTable(Object.entries(t.params || {}),
      t.duplicate_of !== null ? 'A reused result: the decisions are those of the trial it reused.'
        : 'No sampled decisions (a baseline or a warm-start design).'));
    $('decisions-note').textContent = t.params ? `${Object.keys(t.params).length} decisions` : '';
    const link = (n) => (n === null || n === undefined ? null : el('a', { href: paths.trial(study, n) }, `#${n}`));
    const run = [['database id', t.id], ['started (UTC)', t.started_at.replace('T', ' ').slice(0, 19)],
      ['finished (UTC)', t.finished_at ? t.finished_at.replace('T', ' ').slice(0, 19) : null],
      ['wall time', MX.duration(seconds)], ['compute seconds', t.compute_seconds],
      ['worker', t.worker], ['attempt', t.attempt], ['retry of', link(t.retry_of)],
      ['result reused from trial', link(t.duplicate_of)],
      ['steps saved by pruning', t.saved_steps], ['weights kept', t.has_weights ? 'yes' : 'no']]
      .filter(([, v]) => v !== null && v !== undefined);
    $('run').replaceChildren(kvTable(run, ''));
    if (t.duplicate_of !== null) {
      $('reused').replaceChildren(el('div', { class: 'notice', style: { marginBottom: '16px' } },
        'This design was drawn again: its result is reused from ', link(t.duplicate_of),
        ', which trained it (weights and learning curve are there).'));
    }
    renderCurve(t.curve);
  }

  // Losses (train, validation, perplexity, bits) on the left axis; accuracies and other metrics on
  // the right one, so that a 0-1 accuracy is not flattened against a loss of 9.
  const isLoss = (metric) => /loss|ppl|perplexity|bpb|bpc|nll/i.test(metric);

  function renderCurve(curve) {
    if (!curve.step.length) {
      $('curve').replaceChildren(el('div', { class: 'empty' },
        'No learning curve recorded (a reused result has its curve at the trial that trained it).'));
      return;
    }
    const tokens = curve.tokens.map(fmt);
    const traces = [{
      type: 'scatter', mode: 'lines+markers', name: 'train loss', x: curve.step, y: curve.train_loss,
      customdata: tokens, line: { color: '#4f46e5', width: 2 }, marker: { size: 4 },
      hovertemplate: 'step %{x} (%{customdata} tokens)<br>train loss %{y:.4f}<extra></extra>',
    }];
    const palette = ['#059669', '#d97706', '#db2777', '#0891b2', '#7c3aed'];
    let right = false;
    Object.entries(curve.metrics).forEach(([metric, ys], i) => {
      const loss = isLoss(metric);
      right = right || !loss;
      traces.push({
        type: 'scatter', mode: 'lines+markers', name: MX.escapeHtml(metric), x: curve.step, y: ys,
        connectgaps: true, yaxis: loss ? 'y' : 'y2',
        line: { color: palette[i % palette.length], width: 1.5, dash: loss ? 'dot' : 'solid' }, marker: { size: 5 },
        hovertemplate: `step %{x}<br>${MX.escapeHtml(metric)} %{y:.4f}<extra></extra>`,
      });
    });
    const rungs = curve.step.map((step, i) => [step, curve.rung[i]]).filter(([, rung]) => rung !== null);
    Plotly.react('curve', traces, {
      font: MX.PLOT_FONT, margin: { l: 56, r: 56, t: 28, b: 48 }, hovermode: 'x unified',
      plot_bgcolor: '#fff', paper_bgcolor: '#fff',
      xaxis: MX.axisStyle('step'),
      yaxis: MX.axisStyle('loss'),
      yaxis2: right ? MX.axisStyle('accuracy / metric', { overlaying: 'y', side: 'right', showgrid: false }) : undefined,
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom' },
      shapes: rungs.map(([step]) => ({ type: 'line', x0: step, x1: step, yref: 'paper', y0: 0, y1: 1,
        line: { color: '#9ca3af', width: 1, dash: 'dash' } })),
      annotations: rungs.map(([step, rung]) => ({ x: step, yref: 'paper', y: 1, text: `rung ${rung}`,
        showarrow: false, yanchor: 'bottom', font: { size: 10.5, color: '#6b7785' } })),
    }, MX.PLOT_CONFIG);
    $('curve-note').textContent = `${curve.step.length} evaluations`
      + (rungs.length ? `, ${rungs.length} of them pruning rungs (dashed)` : '');
  }

  // -- code -------------------------------------------------------------------------------------

  async function loadCode() {
    const response = await fetch(`${api}/code`);
    const text = await response.text();
    if (!response.ok) {
      let message = text;
      try { message = JSON.parse(text).error; } catch (_) { /* not JSON: show as is */ }
      $('code').replaceChildren(el('div', { class: 'notice' }, `No code: ${message}`));
      return;
    }
    $('code').replaceChildren(el('pre', { class: 'code', id: 'code-text' }, text));
    $('code-note').textContent = `${text.split('\n').length} lines, standalone (torch only)`;
    const download = $('download');
    download.href = `${api}/code?download=1`;
    download.removeAttribute('aria-disabled');
    const copy = $('copy');
    copy.removeAttribute('aria-disabled');
    copy.addEventListener('click', async (event) => {
      event.preventDefault();
      await navigator.clipboard.writeText(text);
      copy.textContent = 'Copied';
      setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
    });
  }

  async function start() {
    let trial;
    try {
      trial = await getJSON(api);
      renderTrial(trial);
      loadCode().catch((error) => MX.showError($('code'), error));
      document.body.dataset.ready = 'true';
    } catch (error) {
      MX.showError(document.querySelector('main'), error);
      return;
    }
    const tick = MX.poll(async () => {
      if (trial.state !== 'running') return;
      trial = await getJSON(api);
      renderTrial(trial);
    }, 2000);
    tick();
  }

  start();
})();
