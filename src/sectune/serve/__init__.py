"""Use and ship a result: chat with a model or run, export a merged model (HF folder, model card, Modelfile)."""
