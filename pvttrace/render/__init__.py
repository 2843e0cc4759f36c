"""Layer 5: rich renderables, markdown, CSV and plots made from the data of the layers below."""
