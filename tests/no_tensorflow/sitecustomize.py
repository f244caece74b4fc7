import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, _Block())
