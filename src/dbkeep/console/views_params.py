from aiohttp import web


def routes(router: web.UrlDispatcher, console) -> None:
    pass
