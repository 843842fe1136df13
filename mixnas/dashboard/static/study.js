// The study page: Pareto front over two chosen objectives (one point per design), hypervolume
// history (all objectives or the two plotted), trials table. Fronts and hypervolume come from the
// server; the view (axes, colour, scales) lives in the URL; the page polls changed trials every 2 s.
'use strict';

(() => {
  const { el, fmt, badge, paths, getJSON, escapeHtml } = MX;
  const name = MX.route().study;
  const PAGE_SIZE = 50;
  const STATES = ['running', 'complete', 'pruned', 'failed', 'infeasible'];
  const STATE_COLORS = { pruned: '#9ca3af', failed: '#dc2626', infeasible: '#ea580c', running: '#2563eb' };
  const $ = (id) => document.getElementById(id);

  const view = {
    study: null, rows: new Map(), cursor: null, front: null, hv: null,
    sort: { key: 'number', desc: true }, page: 0,
  };
  // Row layout of /trials (see its `fields`): number, state, baseline, mix, seconds, values,
  // design (architecture hash), shape (width, depth and layer order).
  const N = 0, STATE = 1, BASELINE = 2, MIX = 3, SECONDS = 4, VALUES = 5, DESIGN = 6, SHAPE = 7;
  const VIEW = ['x', 'y', 'colour', 'xscale', 'yscale', 'hv'];
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

  MX.header([[name, null]]);
  document.title = `${name} · mixnas dashboard`;
  $('title').textContent = name;

  function objectiveIndex(objName) {
    return view.study.objectives.findIndex((o) => o.name === objName);
  }
  function axes() {
    return {
      x: $('x-axis').value, y: $('y-axis').value, colour: $('colour').value,
      xscale: $('x-scale').value, yscale: $('y-scale').value, hv: $('hv-dims').value,
    };
  }
  // The view in the URL, so that a link shows what its sender saw.
  function saveView() {
    const params = new URLSearchParams();
    const current = axes();
    for (const key of VIEW) if (current[key]) params.set(key, current[key]);
    history.replaceState(null, '', `${location.pathname}?${params}`);
  }

  // -- summary ----------------------------------------------------------------------------------

  function renderSummary() {
    const s = view.study;
    $('state').replaceChildren(badge(s.state));
    $('objectives').textContent = s.objectives.map(MX.objectiveLabel).join(' · ');
    const stat = (label, value, note) => el('div', { class: 'stat' },
      el('div', { class: 'label' }, label), el('div', { class: 'value' }, value),
      note ? el('div', { class: 'note' }, note) : null);
    const c = s.counts;
    const cards = [
      stat('Trials', s.n_trials.toLocaleString('en-US'), `target ${s.target_trials.toLocaleString('en-US')}`),
      stat('Complete', c.complete.toLocaleString('en-US'), `${c.running} running`),
      stat('Pruned · failed · infeasible', `${c.pruned} · ${c.failed} · ${c.infeasible}`),
      stat('Pareto front', s.front.length.toLocaleString('en-US'),
        `designs, all ${s.objectives.length} objectives`),
    ];
    for (const o of s.objectives) {
      const best = s.best[o.name];
      cards.push(stat(`best ${o.name}`, best ? fmt(best.value) : '—',
        best ? el('a', { href: paths.trial(name, best.number) }, `trial #${best.number}`) : o.direction));
    }
    $('stats').replaceChildren(...cards);
  }

  // -- Pareto plot ------------------------------------------------------------------------------

  // One point per design: its first complete trial stands for it, the others repeat its result.
  function designs(rows) {
    const byDesign = new Map();
    for (const r of rows) {
      if (r[STATE] !== 'complete') continue;
      const key = r[DESIGN] || `#${r[N]}`;
      if (!byDesign.has(key)) byDesign.set(key, []);
      byDesign.get(key).push(r[N]);
    }
    for (const numbers of byDesign.values()) numbers.sort((a, b) => a - b);
    return byDesign;
  }

  function hoverText(row, trials) {
    const lines = [`<b>#${row[N]}</b> ${escapeHtml(row[BASELINE] || '')}`,
      escapeHtml(row[SHAPE] || row[MIX] || 'no architecture')];
    view.study.objectives.forEach((o, i) => lines.push(`${escapeHtml(o.name)}: ${fmt(row[VALUES][i])}`));
    if (trials && trials.length > 1) {
      lines.push(`design tried ${trials.length}×: ${trials.map((n) => `#${n}`).join(' ')} (#${trials[0]} trained it)`);
    }
    return lines.join('<br>');
  }

  function renderPareto() {
    const { x, y, colour, xscale, yscale } = axes();
    const xi = objectiveIndex(x), yi = objectiveIndex(y), ci = objectiveIndex(colour);
    const dirX = view.study.objectives[xi].direction;
    const rows = [...view.rows.values()];
    const byDesign = designs(rows);
    const trialsOf = (r) => byDesign.get(r[DESIGN] || `#${r[N]}`);
    const plotted = rows.filter((r) => r[STATE] === 'complete' && trialsOf(r)[0] === r[N]
      && isNum(r[VALUES][xi]) && isNum(r[VALUES][yi]));
    const onFront = new Set(view.front.trials);
    const front = plotted.filter((r) => onFront.has(r[N]))
      .sort((a, b) => a[VALUES][xi] - b[VALUES][xi] || a[VALUES][yi] - b[VALUES][yi]);
    const dominated = plotted.filter((r) => !onFront.has(r[N]));
    const colours = plotted.map((r) => r[VALUES][ci]).filter(isNum);
    const colourRange = ci >= 0 && colours.length ? [Math.min(...colours), Math.max(...colours)] : null;
    const marker = (points, extra) => Object.assign(colourRange ? {
      color: points.map((r) => r[VALUES][ci]), colorscale: 'Viridis', cmin: colourRange[0], cmax: colourRange[1],
    } : { color: '#6366f1' }, extra);
    const scatter = (points, label, extra) => Object.assign({
      type: 'scatter', mode: 'markers', name: label,
      x: points.map((r) => r[VALUES][xi]), y: points.map((r) => r[VALUES][yi]),
      customdata: points.map((r) => [r[N], hoverText(r, trialsOf(r))]),
      hovertemplate: '%{customdata[1]}<extra></extra>',
    }, extra);
    // a design tried more than once: a larger marker and its count beside it
    const counted = front.filter((r) => trialsOf(r).length > 1);

    const traces = [
      scatter(dominated, `dominated (${dominated.length} designs)`, {
        marker: marker(dominated, { size: 6, opacity: 0.32, line: { width: 0 } }),
      }),
      scatter(front, 'front', {
        mode: 'lines', hoverinfo: 'skip', hovertemplate: null, showlegend: false,
        line: { shape: dirX === 'minimize' ? 'hv' : 'vh', color: '#111827', width: 1.6 },
      }),
      scatter(front, `Pareto front (${front.length} designs)`, {
        marker: marker(front, {
          size: front.map((r) => (trialsOf(r).length > 1 ? 14 : 11)), line: { color: '#111827', width: 1.5 },
          showscale: Boolean(colourRange),
          colorbar: colourRange ? {
            title: { text: escapeHtml(MX.objectiveLabel(view.study.objectives[ci])), side: 'right' },
            thickness: 12, len: 0.85, outlinewidth: 0, exponentformat: 'SI',
          } : undefined,
        }),
      }),
    ];
    if (counted.length) {
      traces.push(scatter(counted, 'tried more than once', {
        mode: 'text', text: counted.map((r) => `×${trialsOf(r).length}`), textposition: 'middle right',
        textfont: { size: 11, color: '#111827' }, hoverinfo: 'skip', hovertemplate: null, showlegend: false,
      }));
    }
    const baselines = plotted.filter((r) => r[BASELINE]);
    if (baselines.length) {
      traces.push(scatter(baselines, 'baselines', {
        mode: 'markers+text', text: baselines.map((r) => escapeHtml(r[BASELINE])),
        textposition: 'top center', textfont: { size: 11, color: '#7c2d12' },
        marker: { symbol: 'diamond', size: 13, color: '#fbbf24', line: { color: '#7c2d12', width: 1.5 } },
      }));
    }
    // Trials that did not complete: at their point when they report both values, otherwise as a
    // rug of x marks along the x axis when they report x; the rest are counted in the footnote.
    const others = rows.filter((r) => r[STATE] !== 'complete' && isNum(r[VALUES][xi]));
    const placed = others.filter((r) => isNum(r[VALUES][yi]));
    const rug = others.filter((r) => !isNum(r[VALUES][yi]));
    if (placed.length) {
      traces.push(scatter(placed, `not complete (${placed.length})`, {
        marker: { symbol: 'x', size: 8, color: placed.map((r) => STATE_COLORS[r[STATE]]), opacity: 0.7 },
      }));
    }
    if (rug.length) {
      traces.push(scatter(rug, `${[...new Set(rug.map((r) => r[STATE]))].join(' / ')} (${rug.length}, no ${escapeHtml(y)})`, {
        y: rug.map(() => 0.025), yaxis: 'y2',
        marker: { symbol: 'x-thin-open', size: 8, line: { width: 1.5 }, color: rug.map((r) => STATE_COLORS[r[STATE]]), opacity: 0.8 },
      }));
    }
    const axis = (objective, type) => MX.axisStyle(MX.objectiveLabel(objective), { type });
    Plotly.react('pareto', traces, {
      font: MX.PLOT_FONT, margin: { l: 64, r: 16, t: 36, b: 52 }, hovermode: 'closest',
      plot_bgcolor: '#fff', paper_bgcolor: '#fff', uirevision: `${x}|${y}|${xscale}|${yscale}`,
      xaxis: axis(view.study.objectives[xi], xscale), yaxis: axis(view.study.objectives[yi], yscale),
      yaxis2: { overlaying: 'y', range: [0, 1], visible: false, fixedrange: true },
      legend: { orientation: 'h', x: 0, y: 1.02, yanchor: 'bottom', font: { size: 11.5 } },
    }, MX.PLOT_CONFIG);

    const unplotted = {};
    for (const r of rows) {
      if (!(isNum(r[VALUES][xi]) && (r[STATE] !== 'complete' || isNum(r[VALUES][yi])))) {
        unplotted[r[STATE]] = (unplotted[r[STATE]] || 0) + 1;
      }
    }
    const repeats = rows.filter((r) => r[STATE] === 'complete' && trialsOf(r)[0] !== r[N]).length;
    const hidden = [[xscale, xi], [yscale, yi]].filter(([scale, i]) => scale === 'log')
      .reduce((n, [, i]) => n + plotted.filter((r) => r[VALUES][i] <= 0).length, 0);
    const listed = Object.entries(unplotted).flatMap(([state, n], i) => [i ? ', ' : '',
      el('a', { href: '#trials', onclick: () => filterState(state) }, `${n} ${state}`)]);
    $('pareto-note').replaceChildren(
      `${front.length} of ${plotted.length} designs on the front of ${x} and ${y}`
      + (repeats ? ` (${repeats} complete trials repeat a design and are drawn as its point)` : '')
      + '. Click a point to open the trial that trained it.'
      + (hidden ? ` ${hidden} values ≤ 0 are off the log axis.` : ''),
      ...(listed.length ? [' Not plotted (no values): ', ...listed, '.'] : []));
  }

  // -- hypervolume ------------------------------------------------------------------------------

  function renderHypervolume() {
    const hv = view.hv;
    const names = hv.objectives.map((o) => o.name);
    Plotly.react('hypervolume', [{
      type: 'scatter', mode: 'lines', x: hv.trials, y: hv.normalized, name: 'hypervolume',
      customdata: hv.hypervolume.map(fmt),
      line: { shape: 'hv', color: '#4f46e5', width: 2 }, fill: 'tozeroy', fillcolor: 'rgba(79,70,229,0.08)',
      hovertemplate: 'after trial #%{x}: %{y:.3f} of the box (%{customdata})<extra></extra>',
    }], {
      font: MX.PLOT_FONT, margin: { l: 64, r: 16, t: 36, b: 52 }, showlegend: false,
      plot_bgcolor: '#fff', paper_bgcolor: '#fff',
      xaxis: MX.axisStyle('trial number'),
      yaxis: MX.axisStyle(`hypervolume (${names.length}-D, share of box)`, { rangemode: 'tozero' }),
    }, MX.PLOT_CONFIG);
    $('hypervolume-note').textContent = hv.reference
      ? `Hypervolume of the front of ${names.join(', ')} after each complete trial, as a share of the `
        + 'box between the best value of each objective and the reference point '
        + `${hv.objectives.map((o, i) => `${o.name} = ${fmt(hv.reference[i])}`).join(', ')} `
        + '(the worst values pushed out by 10% of their range, rounded; never below 0 for values ≥ 0).'
      : 'No complete trials yet.';
  }

  // -- trials table -----------------------------------------------------------------------------

  function filterState(state) {
    $('state-filter').value = state;
    view.page = 0;
    renderTable();
  }

  function tableRows() {
    const text = $('filter').value.trim().toLowerCase();
    const state = $('state-filter').value;
    const onFront = $('front-only').checked ? new Set(view.front.trials) : null;
    const rows = [...view.rows.values()].filter((r) => (!state || r[STATE] === state)
      && (!onFront || onFront.has(r[N]))
      && (!text || `#${r[N]} ${r[MIX]} ${r[BASELINE] || ''}`.toLowerCase().includes(text)));
    const { key, desc } = view.sort;
    const value = (r) => (typeof key === 'number' ? r[VALUES][key]
      : { number: r[N], state: r[STATE], mix: r[MIX], baseline: r[BASELINE], seconds: r[SECONDS] }[key]);
    rows.sort((a, b) => {
      const va = value(a), vb = value(b);
      if (va === vb) return a[N] - b[N];
      if (va === null || va === undefined) return 1; // missing values last in both directions
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : 1) * (desc ? -1 : 1);
    });
    return rows;
  }

  function renderTable() {
    const objectives = view.study.objectives;
    const rows = tableRows();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    view.page = Math.min(view.page, pages - 1);
    const shown = rows.slice(view.page * PAGE_SIZE, (view.page + 1) * PAGE_SIZE);
    const onFront = new Set(view.front.trials);
    const columns = [['number', '#', 'num'], ['state', 'state'],
      ...objectives.map((o, i) => [i, MX.objectiveLabel(o), 'num']),
      ['mix', 'token mixers'], ['baseline', 'baseline'], ['seconds', 'time', 'num']];
    const head = el('tr', {}, columns.map(([key, label, cls]) => {
      const arrow = view.sort.key === key ? (view.sort.desc ? ' ↓' : ' ↑') : '';
      return el('th', {
        class: `sortable ${cls || ''}`, 'data-key': String(key),
        onclick: () => {
          view.sort = { key, desc: view.sort.key === key ? !view.sort.desc : false };
          renderTable();
        },
      }, label, el('span', { class: 'arrow' }, arrow));
    }));
    const body = shown.map((r) => el('tr', {
      class: `clickable ${onFront.has(r[N]) ? 'on-front' : ''}`, 'data-number': r[N],
      onclick: (event) => { if (!event.target.closest('a')) location.href = paths.trial(name, r[N]); },
    },
    el('td', { class: 'num' }, el('a', { href: paths.trial(name, r[N]) }, `#${r[N]}`)),
    el('td', {}, badge(r[STATE])),
    objectives.map((o, i) => el('td', { class: 'num' }, fmt(r[VALUES][i]))),
    el('td', { class: 'mono' }, r[MIX] || '—'),
    el('td', {}, r[BASELINE] ? badge(r[BASELINE], 'baseline') : ''),
    el('td', { class: 'num subtle' }, MX.duration(r[SECONDS]))));
    $('trials').replaceChildren(rows.length
      ? el('table', { id: 'trials-table' }, el('thead', {}, head), el('tbody', {}, body))
      : el('div', { class: 'empty' }, 'No trial matches.'));
    $('table-count').textContent = `${rows.length.toLocaleString('en-US')} of ${view.rows.size.toLocaleString('en-US')}`;
    const first = rows.length ? view.page * PAGE_SIZE + 1 : 0;
    const go = (delta) => () => { view.page += delta; renderTable(); };
    $('pager').replaceChildren(`${first}–${view.page * PAGE_SIZE + shown.length} of ${rows.length.toLocaleString('en-US')}`,
      el('button', { class: 'button', onclick: go(-1), disabled: view.page === 0 }, '‹ prev'),
      el('button', { class: 'button', onclick: go(1), disabled: view.page >= pages - 1 }, 'next ›'));
  }

  // -- loading ----------------------------------------------------------------------------------

  async function loadAnalysis() {
    const { x, y, hv: dims } = axes();
    const q = `?x=${encodeURIComponent(x)}&y=${encodeURIComponent(y)}`;
    const [front, hv] = await Promise.all([
      getJSON(paths.api(name, `/pareto${q}`)),
      getJSON(paths.api(name, `/hypervolume${dims === 'xy' ? q : ''}`)),
    ]);
    view.front = front;
    view.hv = hv;
  }

  function mergeRows(answer) {
    let changed = false;
    for (const row of answer.rows) {
      const old = view.rows.get(row[N]);
      if (!old || JSON.stringify(old) !== JSON.stringify(row)) {
        view.rows.set(row[N], row);
        changed = true;
      }
    }
    view.cursor = answer.cursor;
    return changed;
  }

  function renderAll() {
    renderSummary();
    renderPareto();
    renderHypervolume();
    renderTable();
  }

  function fillSelectors() {
    const names = view.study.objectives.map((o) => o.name);
    const wanted = new URLSearchParams(location.search);
    const pick = (key, fallback, allowed) => {
      const value = wanted.get(key);
      return value !== null && allowed.includes(value) ? value : fallback;
    };
    const options = (select, values, chosen) => {
      select.replaceChildren(...values.map(([value, label]) => el('option', { value, selected: value === chosen }, label)));
    };
    const pairs = names.map((n) => [n, n]);
    const x = pick('x', names[0], names);
    const y = pick('y', names[1] !== x ? names[1] : names[0], names.filter((n) => n !== x));
    options($('x-axis'), pairs, x);
    options($('y-axis'), pairs, y);
    options($('colour'), [['', 'none'], ...pairs], pick('colour', names.find((n) => n !== x && n !== y) || '', ['', ...names]));
    const scales = [['linear', 'linear'], ['log', 'log']];
    options($('x-scale'), scales, pick('xscale', 'linear', ['linear', 'log']));
    options($('y-scale'), scales, pick('yscale', 'linear', ['linear', 'log']));
    options($('hv-dims'), [['all', `all ${names.length} objectives`], ['xy', 'x and y only']], pick('hv', 'all', ['all', 'xy']));
    options($('state-filter'), [['', 'all'], ...STATES.map((s) => [s, s])], '');
    const reload = async () => {
      saveView();
      await loadAnalysis();
      renderPareto();
      renderHypervolume();
      renderTable();
    };
    for (const id of ['x-axis', 'y-axis']) {
      $(id).addEventListener('change', async () => {
        if ($('x-axis').value === $('y-axis').value) { // keep the two axes different
          const other = id === 'x-axis' ? 'y-axis' : 'x-axis';
          $(other).value = names.find((n) => n !== $(id).value);
        }
        await reload();
      });
    }
    $('hv-dims').addEventListener('change', reload);
    for (const id of ['colour', 'x-scale', 'y-scale']) {
      $(id).addEventListener('change', () => { saveView(); renderPareto(); });
    }
    for (const id of ['filter', 'state-filter', 'front-only']) {
      $(id).addEventListener('input', () => { view.page = 0; renderTable(); });
    }
  }

  async function start() {
    try {
      view.study = await getJSON(paths.api(name));
      if (view.study.objectives.length < 2) {
        throw new Error('This page plots studies with at least two objectives.');
      }
      fillSelectors();
      saveView();
      $('insight-link').href = `${paths.study(name)}/insight`;
      const [trials] = await Promise.all([getJSON(paths.api(name, '/trials')), loadAnalysis()]);
      mergeRows(trials);
      renderAll();
      $('pareto').on('plotly_click', (event) => {
        const point = event.points.find((p) => p.customdata);
        if (point) location.href = paths.trial(name, point.customdata[0]);
      });
      document.body.dataset.ready = 'true';
    } catch (error) {
      MX.showError(document.querySelector('main'), error);
      return;
    }
    const tick = MX.poll(async () => {
      const since = encodeURIComponent(view.cursor || '');
      const answer = await getJSON(paths.api(name, view.cursor ? `/trials?since=${since}` : '/trials'));
      if (mergeRows(answer)) {
        [view.study] = await Promise.all([getJSON(paths.api(name)), loadAnalysis()]);
        renderAll();
      }
    }, 2000);
    tick();
  }

  start();
})();
