// Validates an OpenAPI description (3.0 or 3.1) against the specification's schema, and
// checks that its $refs resolve: node validate-openapi.js FILE. Exit 0 when valid.
"use strict";
const SwaggerParser = require("@apidevtools/swagger-parser");

SwaggerParser.validate(process.argv[2])
    .then((api) => console.log(`valid: ${api.info.title} ${api.info.version} (OpenAPI ${api.openapi})`))
    .catch((err) => {
        console.error(err.message);
        process.exit(1);
    });
