// The subset of CEL (Envoy's access-log filter envoy.access_loggers.extension_filters.cel)
// that the forward proxy's HTTP loggers use, evaluated as Envoy would for one request:
// a conjunction ("&&") of terms `xds.route_name.startsWith("P")`, each possibly negated.
// xds.route_name is the name of the route the request took (absent when none was taken:
// then every term is an evaluation error, which Envoy's CEL filter treats as false).
// Anything outside the subset throws: a generator writing it must extend this model.

const TERM = /^(!?)xds\.route_name\.startsWith\(("(?:[^"\\]|\\.)*")\)$/;

export function evaluateRouteNameCel(expression: string, routeName: string | undefined): boolean {
  const terms = expression.split(' && ');
  let result = true;
  for (const term of terms) {
    const match = TERM.exec(term.trim());
    if (!match) throw new Error(`CEL term outside the modelled subset: ${term}`);
    if (routeName === undefined) return false;
    const holds = routeName.startsWith(JSON.parse(match[2]!) as string);
    if ((match[1] === '!') === holds) result = false;
  }
  return result;
}
