"""The Gradio app: layout, thin handlers over jepa4rec.recommend.Recommender, plots."""
