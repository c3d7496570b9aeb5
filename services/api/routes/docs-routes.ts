import { renderDocsPage } from '../docs-page.ts'
import { buildOpenApiDocument, type OpenApiDocument } from '../openapi.ts'
import { defineRoute } from '../route.ts'
import type { RoutePlugin } from './route-plugin.ts'

/** `/docs/openapi.json` and `/docs`, built once from the routes registered when first asked. */
export const docsRoutes: RoutePlugin = async (app) => {
  let document: OpenApiDocument | undefined
  let page: string | undefined
  const openApi = (): OpenApiDocument => (document ??= buildOpenApiDocument(app.apiContext.routes))

  defineRoute(app, {
    method: 'GET',
    url: '/docs/openapi.json',
    summary: 'This description, OpenAPI 3.1',
    tags: ['docs'],
    auth: 'public',
    hidden: true,
    async handler({ reply }) {
      return reply.type('application/json; charset=utf-8').send(JSON.stringify(openApi()))
    },
  })

  defineRoute(app, {
    method: 'GET',
    url: '/docs',
    summary: 'Human documentation',
    tags: ['docs'],
    auth: 'public',
    hidden: true,
    async handler({ reply }) {
      page ??= renderDocsPage(openApi())
      return reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'")
        .header('x-frame-options', 'DENY')
        .send(page)
    },
  })
}
