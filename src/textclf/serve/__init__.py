"""``textclf serve``: settings, the nginx + gunicorn supervisor, the Flask app, codecs, rules, request log.

Never imports ``train``, ``export``, torch or transformers: the slim serving image has none of them.
"""
