import { z } from 'zod';

export const pageQuery = {
  page: z.coerce.number().int().min(1).default(1).describe('1-based page number'),
  pageSize: z.coerce.number().int().min(1).max(500).default(10).describe('rows per page (at most 500)'),
};

export interface Page<T> {
  items: T[];
  total: number;
  page: number;
  pageSize: number;
}

export const pageOf = <T extends z.ZodTypeAny>(item: T) =>
  z.object({ items: z.array(item), total: z.number().int(), page: z.number().int(), pageSize: z.number().int() });

/** Escapes LIKE metacharacters so a search term is matched literally. */
export const likePattern = (term: string) => `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** Runs a page query and its count together and answers the page. */
export async function paginate<R, T>(
  rows: PromiseLike<R[]>,
  total: PromiseLike<{ n: number }[]>,
  view: (row: R) => T,
  page: number,
  pageSize: number,
): Promise<Page<T>> {
  const [items, totals] = await Promise.all([rows, total]);
  return { items: items.map(view), total: totals[0]?.n ?? 0, page, pageSize };
}
