// The console's only way to fnlb: the TencentCloud API actions tccli uses, sent to POST / with the session cookie
// and its CSRF token instead of a TC3 signature. The page never holds a secret key.

const VERSIONS = { scf: '2018-04-16', clb: '2018-03-17' };

export class ApiError extends Error {
  constructor(code, message, requestId) {
    super(message);
    this.code = code;
    this.requestId = requestId;
  }
}

/** The signed-in session: {Uin, AppId, Csrf}, and the region requests go to. */
export const session = { current: null, region: localStorage.getItem('fnlb.region') || 'ap-guangzhou' };

async function sessionCall(method, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (session.current) headers['X-Fnlb-Csrf'] = session.current.Csrf;
  const response = await fetch('/console/session', {
    method,
    headers,
    body: body ? JSON.stringify(body) : undefined,
    credentials: 'same-origin',
  });
  const answer = await response.json();
  if (!response.ok) throw new ApiError(answer.Error.Code, answer.Error.Message);
  return answer;
}

/** The session of this browser, or null when signed out. */
export async function resume() {
  try {
    const answer = await sessionCall('GET');
    session.current = answer.Uin ? answer : null;
  } catch {
    session.current = null;
  }
  return session.current;
}

export async function signIn(secretId, secretKey) {
  session.current = await sessionCall('POST', { SecretId: secretId, SecretKey: secretKey });
  return session.current;
}

/** Ends the session; a session that had already ended counts as signed out. */
export async function signOut() {
  try {
    await sessionCall('DELETE');
  } catch {
    // Already ended (expired, or fnlb restarted): nothing left to close.
  } finally {
    session.current = null;
  }
}

export function setRegion(region) {
  session.region = region;
  localStorage.setItem('fnlb.region', region);
}

/** Calls an action of `scf` or `clb`; resolves to its `Response` or throws an ApiError with Tencent's code. */
export async function call(service, action, params = {}) {
  const response = await fetch('/', {
    method: 'POST',
    credentials: 'same-origin',
    headers: {
      'Content-Type': 'application/json',
      'X-TC-Action': action,
      'X-TC-Version': VERSIONS[service],
      'X-TC-Region': session.region,
      'X-Fnlb-Service': service,
      'X-Fnlb-Csrf': session.current ? session.current.Csrf : '',
    },
    body: JSON.stringify(params),
  });
  const { Response: answer } = await response.json();
  if (answer.Error) {
    if (answer.Error.Code === 'AuthFailure.InvalidAuthorization') {
      session.current = null;
      window.dispatchEvent(new Event('fnlb:signed-out'));
    }
    throw new ApiError(answer.Error.Code, answer.Error.Message, answer.RequestId);
  }
  return answer;
}

export const scf = (action, params) => call('scf', action, params);
export const clb = (action, params) => call('clb', action, params);

/** Every item of a paged list action. */
export async function all(service, action, params, key, page = 100) {
  const items = [];
  for (;;) {
    const answer = await call(service, action, { ...params, Offset: items.length, Limit: page });
    const got = answer[key] || [];
    items.push(...got);
    if (got.length < page || items.length >= (answer.TotalCount || 0)) return items;
  }
}
