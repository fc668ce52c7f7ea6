console.log("lockbox");
