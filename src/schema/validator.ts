// JSON Schema validation of untrusted bodies (admin API requests, policy files),
// by ajv. The schema objects handed to compileSchema are the ones the OpenAPI
// document (src/admin/openapi.ts) lists in components.schemas, so the document
// and the server cannot disagree on a body's shape.
//
// Why ajv: the maintained, standard JSON Schema validator of the Node ecosystem;
// it compiles each schema once into plain JavaScript, so a check costs about what
// hand-written type tests cost, and it speaks draft 2020-12, OpenAPI 3.1's dialect.
//
// Options, and why:
//   strict        an unknown keyword, a keyword on the wrong type or a missing
//                 "type" is a start-up error, not a check silently skipped;
//   allErrors off the first problem is reported (like every other error here), and
//                 validation stops there: a hostile body costs no more than it must;
//   no coercion, no defaults, no removal: the body is only read, never changed;
//   verbose       errors carry the offending value and schema, for the messages;
//   validateSchema off: checking our constant schemas against the 2020-12
//                 meta-schema would compile that meta-schema at every start
//                 (~160 ms of CPU); test/admin/openapi.test.ts does it instead,
//                 for every schema of the OpenAPI document.
// Schemas are compiled when their module loads, i.e. once at start-up; never per request.
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { fieldError, MESSAGE_KEYWORDS, type SchemaFieldError } from './errorMessage.js';

export type { SchemaFieldError } from './errorMessage.js';

const ajv = new Ajv2020({
  strict: true,
  allErrors: false,
  coerceTypes: false,
  useDefaults: false,
  removeAdditional: false,
  verbose: true,
  validateSchema: false,
  // Formats are documentation only in these schemas (a date-time in a response).
  validateFormats: false,
});
// Annotations for the error messages (see errorMessage.ts); OpenAPI 3.1 allows
// "x-" extensions in a Schema Object, and ajv must know them to stay strict.
for (const keyword of MESSAGE_KEYWORDS) ajv.addKeyword(keyword);

/** A compiled check: true when `data` has the schema's shape. */
export interface SchemaCheck<T> {
  (data: unknown): data is T;
  /**
   * Why the last call, on this same `data`, returned false: the field and the
   * words. Call it right after that call (ajv keeps only the last call's errors).
   */
  readonly error: (data: unknown) => SchemaFieldError;
  /** The schema object it was compiled from (the OpenAPI document's). */
  readonly schema: object;
}

const compiled = new Set<object>();

/** Compiles `schema` (once, at module load) into a check whose failures name the field. */
export function compileSchema<T>(schema: object): SchemaCheck<T> {
  const validate = ajv.compile<T>(schema);
  compiled.add(schema);
  const check = ((data: unknown) => validate(data)) as SchemaCheck<T>;
  Object.defineProperty(check, 'error', {
    value: (data: unknown) => fieldError(data, (validate.errors ?? []) as ErrorObject[]),
  });
  Object.defineProperty(check, 'schema', { value: schema });
  return check;
}

/** Every schema object a check was compiled from: the OpenAPI test checks request bodies against it. */
export const compiledSchemas = (): ReadonlySet<object> => compiled;
