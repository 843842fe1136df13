// The "what matters" page: per objective, how much each grammar decision matters (PED-ANOVA), how
// the objective moves with the design's composition, and a parallel-coordinates view. Every figure
// says how many designs it rests on, and is replaced by the reason when they are too few.
'use strict';

(() => {
  const { el, fmt, paths, getJSON, escapeHtml } = MX;
  const name = MX.route().study;
  const $ = (id) => document.getElementById(id);
  const view = { study: null, insight: null };
  // Row layout of `composition.rows` (see its `fields`).
  const N = 0, SHARE = 1, FAMILY = 2, PLACEMENT = 3, VALUES = 6, DECISIONS = 7;
  const PLACEMENTS = ['no attention', 'first', 'middle', 'last', 'interleaved', 'all attention'];
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

  MX.header([[name, paths.study(name)], ['what matters', null]]);
  document.title = `What matters · ${name} · mixnas dashboard`;

  const layout = (extra) => Object.assign({
    font: MX.PLOT_FONT, margin: { l: 64, r: 16, t: 28, b: 52 }, plot_bgcolor: '#fff',
    paper_bgcolor: '#fff', showlegend: false,
  }, extra);

  function hide(id, reason) {
    $(id).replaceChildren(el('div', { class: 'notice hidden-figure' }, reason));
  }

  function bars(id, ranking, title) {
    const shown = ranking.slice(0, 15).reverse();
    Plotly.react(id, [{
      type: 'bar', orientation: 'h', x: shown.map(([, v]) => v), y: shown.map(([p]) => escapeHtml(p)),
      marker: { color: '#4f46e5' }, hovertemplate: '%{y}: %{x:.3f}<extra></extra>',
    }], layout({
      margin: { l: 180, r: 16, t: 28, b: 48 },
      xaxis: MX.axisStyle(title, { rangemode: 'tozero' }), yaxis: { automargin: true },
    }), MX.PLOT_CONFIG);
  }

  function renderImportance(objective) {
    const found = view.insight.importance;
    const basis = `PED-ANOVA (optuna.importance) on ${found.n} complete designs with recorded decisions `
      + `(a repeated design counted once)${view.insight.cached ? ', cached' : `, computed in ${fmt(found.seconds)} s`}.`;
    if (found.hidden) {
      hide('importance', `Hidden: ${found.hidden}.`);
      hide('front-importance', `Hidden: ${found.hidden}.`);
      $('importance-note').textContent = basis;
      return;
    }
    bars('importance', found.by_objective[objective], `importance for ${objective} (sums to 1)`);
    $('importance-note').textContent = `${basis} Share of the variation of ${objective} between its best `
      + 'designs and the rest that each decision explains.';
    if (found.front.length) {
      bars('front-importance', found.front, 'importance for the front (sums to 1)');
      $('front-note').textContent = `Which decisions separate the designs on the Pareto front of all `
        + `${view.study.objectives.length} objectives from the rest (${found.n} designs).`;
    } else hide('front-importance', 'A single objective: no front to reach.');
  }

  function renderComposition(objective) {
    const comp = view.insight.composition;
    const k = view.study.objectives.findIndex((o) => o.name === objective);
    const rows = comp.rows.filter((r) => isNum(r[VALUES][k]));
    $('composition-count').textContent = `${rows.length} designs`;
    if (comp.hidden || rows.length < comp.min) {
      const reason = comp.hidden || `${rows.length} designs report ${objective}; these plots need at least ${comp.min}`;
      for (const id of ['by-share', 'by-family', 'by-placement']) hide(id, `Hidden: ${reason}.`);
      $('composition-note').textContent = '';
      return;
    }
    const label = escapeHtml(MX.objectiveLabel(view.study.objectives[k]));
    const y = rows.map((r) => r[VALUES][k]);
    const hover = rows.map((r) => `#${r[N]} · ${fmt(r[VALUES][k])}`);
    // a little horizontal jitter, seeded by the trial number, so designs with one share do not stack
    const jitter = (r) => ((r[N] * 2654435761) % 1000) / 1000 * 0.02 - 0.01;
    Plotly.react('by-share', [{
      type: 'scatter', mode: 'markers', x: rows.map((r) => r[SHARE] + jitter(r)), y, text: hover,
      customdata: rows.map((r) => r[N]), marker: { size: 5, color: '#4f46e5', opacity: 0.45 },
      hovertemplate: '%{text}<br>attention share %{x:.2f}<extra></extra>',
    }], layout({ xaxis: MX.axisStyle('share of attention layers', { range: [-0.05, 1.05] }), yaxis: MX.axisStyle(label) }), MX.PLOT_CONFIG);
    const categorical = (id, index, order, title) => {
      const present = order ? order.filter((c) => rows.some((r) => r[index] === c))
        : [...new Set(rows.map((r) => r[index]))].sort();
      Plotly.react(id, [{
        type: 'box', x: rows.map((r) => r[index]), y, text: hover, customdata: rows.map((r) => r[N]),
        boxpoints: 'all', jitter: 0.5, pointpos: 0, marker: { size: 4, color: '#4f46e5', opacity: 0.45 },
        line: { color: '#111827', width: 1 }, fillcolor: 'rgba(0,0,0,0)',
        hovertemplate: '%{text}<extra></extra>',
      }], layout({
        // two-word categories ('no attention') break onto two lines instead of slanting
        xaxis: MX.axisStyle(title, { categoryorder: 'array', categoryarray: present, tickangle: 0,
          tickvals: present, ticktext: present.map((c) => escapeHtml(c).replace(' ', '<br>')) }),
        yaxis: MX.axisStyle(label), margin: { l: 64, r: 16, t: 28, b: 64 },
      }), MX.PLOT_CONFIG);
    };
    categorical('by-family', FAMILY, null, 'recurrent family (most common non-attention mixer)');
    categorical('by-placement', PLACEMENT, PLACEMENTS, 'placement of the attention layers');
    for (const id of ['by-share', 'by-family', 'by-placement']) {
      $(id).on('plotly_click', (event) => {
        const point = event.points[0];
        if (point) location.href = paths.trial(name, point.customdata);
      });
    }
    $('composition-note').textContent = `${rows.length} complete designs, one point each (click one to open it). `
      + 'Composition is read from the architecture: parallel layers count each branch as a fraction.';
  }

  function renderParallel(objective) {
    const comp = view.insight.composition;
    const k = view.study.objectives.findIndex((o) => o.name === objective);
    const rows = comp.rows.filter((r) => r[VALUES].every(isNum));
    if (rows.length < comp.min || !comp.decisions.length) {
      hide('parallel', `Hidden: ${rows.length} designs with every objective`
        + `${comp.decisions.length ? '' : ' and no decision importances'}; the view needs at least ${comp.min}.`);
      return;
    }
    const dimensions = comp.decisions.map((decision, d) => {
      const values = rows.map((r) => r[DECISIONS][d]);
      if (values.every((v) => v === null || isNum(v))) {
        return { label: escapeHtml(decision), values: values.map((v) => (v === null ? NaN : v)),
          tickformat: MX.tickFormat(values.filter(isNum)) };
      }
      const categories = [...new Set(values.map((v) => (v === null ? '(not asked)' : String(v))))].sort();
      return {
        label: escapeHtml(decision), tickvals: categories.map((_, i) => i), ticktext: categories.map(escapeHtml),
        values: values.map((v) => categories.indexOf(v === null ? '(not asked)' : String(v))),
      };
    });
    view.study.objectives.forEach((o, i) => {
      const values = rows.map((r) => r[VALUES][i]);
      dimensions.push({ label: escapeHtml(o.name), values, tickformat: MX.tickFormat(values) });
    });
    Plotly.react('parallel', [{
      type: 'parcoords', dimensions,
      line: { color: rows.map((r) => r[VALUES][k]), colorscale: 'Viridis', showscale: true,
        reversescale: view.study.objectives[k].direction === 'minimize',
        colorbar: { title: { text: escapeHtml(objective) }, thickness: 12 } },
    }], layout({ margin: { l: 80, r: 80, t: 56, b: 24 } }), MX.PLOT_CONFIG);
    $('parallel-note').textContent = `${rows.length} designs; the ${comp.decisions.length} decisions that matter most `
      + `(by importance for any objective), then every objective. Lines coloured by ${objective} (yellow is better). `
      + 'Drag along an axis to select.';
  }

  function render() {
    const objective = $('objective').value;
    history.replaceState(null, '', `${location.pathname}?objective=${encodeURIComponent(objective)}`);
    renderImportance(objective);
    renderComposition(objective);
    renderParallel(objective);
  }

  async function build() {
    const [study, found] = await Promise.all([getJSON(paths.api(name)), getJSON(paths.api(name, '/insight'))]);
    view.study = study;
    view.insight = found;
    $('title').textContent = `What matters · ${name}`;
    $('basis').textContent = `${found.importance.n} designs with decisions · ${found.composition.n} designs in all`;
    const names = study.objectives.map((o) => o.name);
    const wanted = new URLSearchParams(location.search).get('objective');
    $('objective').replaceChildren(...names.map((n) => el('option', { value: n, selected: n === wanted }, n)));
    $('objective').addEventListener('change', render);
    render();
  }

  MX.loadOnce(build);
})();
