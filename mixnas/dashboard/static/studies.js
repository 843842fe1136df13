// The list of studies: state, progress, trial counts by state, best value per objective.
'use strict';

(() => {
  const { el, fmt, badge, paths } = MX;
  MX.header([]);
  const container = document.getElementById('studies');

  function render(studies) {
    document.getElementById('count').textContent =
      `${studies.length} ${studies.length === 1 ? 'study' : 'studies'}`;
    if (!studies.length) {
      container.replaceChildren(el('div', { class: 'empty' }, 'No studies in this database yet.'));
      return;
    }
    const head = el('tr', {}, ['Study', 'State', 'Progress', 'Trials by state', 'Best per objective',
      'Updated'].map((h) => el('th', {}, h)));
    const rows = studies.map((s) => {
      const done = s.n_trials - s.counts.running;
      const share = Math.min(100, (100 * done) / Math.max(1, s.target_trials));
      const counts = Object.entries(s.counts).filter(([, n]) => n > 0)
        .map(([state, n]) => badge(`${n.toLocaleString('en-US')} ${state}`, state));
      const best = s.objectives.map((o) => {
        const b = s.best[o.name];
        return el('div', {}, el('span', { class: 'subtle' }, `${MX.objectiveLabel(o)}: `),
          b ? el('a', { href: paths.trial(s.name, b.number) }, `${fmt(b.value)} (#${b.number})`) : '—');
      });
      return el('tr', {},
        el('td', {}, el('a', { href: paths.study(s.name) }, el('b', {}, s.name)),
          s.parent_study ? el('div', { class: 'subtle' }, `promoted from ${s.parent_study}`) : null),
        el('td', {}, badge(s.state)),
        el('td', {}, el('div', { class: 'progress' }, el('div', { style: { width: `${share}%` } })),
          el('div', { class: 'subtle' }, `${done.toLocaleString('en-US')} / ${s.target_trials.toLocaleString('en-US')}`)),
        el('td', {}, el('div', { class: 'chips' }, counts)),
        el('td', {}, best),
        el('td', { class: 'subtle' }, s.updated_at ? s.updated_at.replace('T', ' ').slice(0, 19) : '—'));
    });
    container.replaceChildren(el('table', {}, el('thead', {}, head), el('tbody', {}, rows)));
  }

  const refresh = MX.poll(async () => render((await MX.getJSON('/api/studies')).studies), 5000);
  refresh();
})();
