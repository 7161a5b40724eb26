"""The Gradio app: layout, thin handlers over jepa4rec.recommender.Recommender, plots."""
