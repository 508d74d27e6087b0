/** Values middlewares share with handlers through `c.get` / `c.set`. */
declare module 'hono' {
  interface ContextVariableMap {
    /** Request id: the client's X-Request-Id when given, else a fresh one. */
    requestId: string;
    /** Whether the answer came without inference (set by the prediction routes). */
    cached: boolean | undefined;
    /** The error code of an error answer (set by the app's error handler), for the access log. */
    errorCode: string | undefined;
  }
}
export {};
