// Node 20 refuses `import x from './x.json'` without `with { type: 'json' }`; @actions/workflow-parser (ESM) does
// exactly that for its schema. This load hook adds the attribute for .json files, nothing else.
export async function load(url, context, next) {
  if (url.endsWith('.json')) return next(url, { ...context, importAttributes: { type: 'json' } })
  return next(url, context)
}
