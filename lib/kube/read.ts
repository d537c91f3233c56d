/** The API server's answers as values: a read of something that may not exist. */

/** The object, or undefined when the API server says 404 (other errors propagate). */
export async function unlessNotFound<T>(read: Promise<T>): Promise<T | undefined> {
  try {
    return await read;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}
