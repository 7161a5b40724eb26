"""Start the JEPA4Rec demo: ``python app.py`` (Hugging Face Spaces runs this file too)."""
from app.main import main

if __name__ == "__main__":
    main()
