// ajv's first error -> {field, message} as a person fixing the body reads it:
// the field as "allow.cidrs[0].ports[1]" (not a JSON pointer), and what is wrong
// in words, with the value when it helps ('"dns" is not one of "name", ...').
//
// A schema can say more than the generic text, with three annotations:
//   x-message   on a schema: its message when one of its own keywords fails;
//               a string (any keyword) or {keyword: message}. "{value}" is the
//               offending value as JSON, "{expected}" the known field names.
//   x-required  on a property's schema: the message when it is missing.
//   x-absent    on a list that must not be empty: what leaving it out means.
import type { ErrorObject } from 'ajv';

/** Same shape as the policy model's FieldError; this layer does not import upward. */
export interface SchemaFieldError {
  /** "allow.sni[2]"; "" for the body itself. */
  readonly field: string;
  readonly message: string;
}

export const MESSAGE_KEYWORDS = ['x-message', 'x-required', 'x-absent'] as const;

type Schema = Record<string, unknown>;

const describe = (value: unknown): string =>
  value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;

const article = (type: string): string => (type === 'integer' || type === 'array' || type === 'object' ? `an ${type}` : `a ${type}`);

const quote = (value: unknown): string => JSON.stringify(value) ?? describe(value);

/** Appends one step to a field path: a property name, or an index into an array. */
export const joinField = (field: string, key: string | number): string =>
  typeof key === 'number' ? `${field}[${key}]` : field === '' ? key : `${field}.${key}`;

/** The field path of a JSON pointer into `root` (array or object decides how each step is written). */
function fieldOf(root: unknown, pointer: string): string {
  let field = '';
  let at = root;
  if (pointer === '') return field;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(at)) {
      field = joinField(field, Number(key));
      at = at[Number(key)];
    } else {
      field = joinField(field, key);
      at = at !== null && typeof at === 'object' ? (at as Record<string, unknown>)[key] : undefined;
    }
  }
  return field;
}

/** One keyword's value in a schema (undefined when the schema is not an object). */
const keywordOf = (schema: unknown, keyword: string): unknown =>
  schema !== null && typeof schema === 'object' ? (schema as Schema)[keyword] : undefined;
const annotation = (schema: unknown, keyword: (typeof MESSAGE_KEYWORDS)[number]): unknown => keywordOf(schema, keyword);

/** The schema's own x-message for this keyword, if it has one. */
function customMessage(parent: unknown, keyword: string): string | undefined {
  const message = annotation(parent, 'x-message');
  if (typeof message === 'string') return message;
  if (message !== null && typeof message === 'object') {
    const specific = (message as Record<string, unknown>)[keyword];
    if (typeof specific === 'string') return specific;
  }
  return undefined;
}

const knownFields = (parent: unknown): string[] => Object.keys((keywordOf(parent, 'properties') as Schema | undefined) ?? {});

function genericMessage(error: ErrorObject, field: string): string {
  const { keyword, params, data, parentSchema } = error;
  const p = params as Record<string, unknown>;
  switch (keyword) {
    case 'type': {
      const types = (Array.isArray(p.type) ? p.type : String(p.type).split(',')) as string[];
      return `must be ${types.map(article).join(' or ')}, got ${describe(data)}`;
    }
    case 'enum':
      return `${quote(data)} is not one of ${(p.allowedValues as unknown[]).map(quote).join(', ')}`;
    case 'const':
      return `must be ${quote(p.allowedValue)}, got ${quote(data)}`;
    case 'additionalProperties': {
      const known = knownFields(parentSchema);
      return known.length > 0 ? `unknown field; expected ${known.join(', ')}` : 'unknown field';
    }
    case 'minItems': {
      if (p.limit !== 1) return `must hold at least ${String(p.limit)} items`;
      const absent = annotation(parentSchema, 'x-absent');
      return typeof absent === 'string' ? `must not be empty; leave ${field} out for ${absent}` : 'must not be empty';
    }
    case 'maxItems':
      return `holds ${(data as unknown[]).length} items; at most ${String(p.limit)}`;
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `is ${[...String(data)].length} characters; at least ${String(p.limit)}`;
    case 'maxLength':
      return `is ${[...String(data)].length} characters; at most ${String(p.limit)}`;
    case 'pattern':
      return `${quote(data)} must match ${String(p.pattern)}`;
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `must be ${String(p.comparison)} ${String(p.limit)}, got ${quote(data)}`;
    case 'anyOf':
    case 'oneOf':
      return `${quote(data)} is none of the accepted forms`;
    default:
      return error.message ?? `fails ${keyword}`;
  }
}

/**
 * The field and message of the error ajv stopped at. With allErrors off, the last
 * error is the one that failed the body; errors before it are the branches an
 * anyOf tried, or (for propertyNames) the reason a property name failed.
 */
export function fieldError(root: unknown, errors: readonly ErrorObject[]): SchemaFieldError {
  let error = errors.at(-1);
  if (error === undefined) return { field: '', message: 'is invalid' };
  let field = fieldOf(root, error.instancePath);
  if (error.keyword === 'propertyNames') {
    // The name itself is the field ("put.Bad Name"); its own schema says what is wrong with it.
    const name = String((error.params as { propertyName: unknown }).propertyName);
    error = errors.find((e) => e.propertyName === name && e.keyword !== 'propertyNames') ?? error;
    field = joinField(field, name);
  } else if (error.keyword === 'required') {
    const missing = String((error.params as { missingProperty: unknown }).missingProperty);
    field = joinField(field, missing);
    const properties = keywordOf(error.parentSchema, 'properties') as Schema | undefined;
    const hint = annotation(properties?.[missing], 'x-required');
    return { field, message: typeof hint === 'string' ? hint : 'is required' };
  } else if (error.keyword === 'additionalProperties') {
    field = joinField(field, String((error.params as { additionalProperty: unknown }).additionalProperty));
  }
  const custom = customMessage(error.parentSchema, error.keyword);
  const message =
    custom === undefined
      ? genericMessage(error, field)
      : custom.replaceAll('{value}', quote(error.data)).replaceAll('{expected}', knownFields(error.parentSchema).join(', '));
  return { field, message };
}
